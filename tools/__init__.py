"""Domain tools over Postgres: settings, database, schema, data generation and import."""
