"""The embedded store: Parquet parts under AGENTWATCH_HOME, read through DuckDB."""
