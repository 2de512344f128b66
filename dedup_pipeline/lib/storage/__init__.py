"""Storage: the per-drop Parquet store, the DuckDB tables and contract views."""
