"""Demo data generation and CSV import."""
