"""Tests of demo data generation and CSV import."""
