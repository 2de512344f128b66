"""Defaults shared by the CLI and the Dagster resource (a module without imports, so that
``dedup-pipeline --help`` can show them without loading Dagster)."""

DEFAULT_DATABASE = "dedup.duckdb"
DEFAULT_TARGET_PRECISION = 0.99
DEFAULT_EMBEDDING_MODEL = "efficientnet-lite0"
