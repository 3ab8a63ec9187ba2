"""Alembic migrations of the Mangalm schema."""
