"""The DuckDB results store: schema (one module), writer, read-only queries."""
