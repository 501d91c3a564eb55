"""The system of record: schema, migrations and the availability engine over PostgreSQL."""
