"""Defaults shared by the CLI and the Dagster resource (a module without imports, so that
``dedup-pipeline --help`` can show them without loading Dagster)."""

DEFAULT_DATABASE = "dedup.duckdb"
DEFAULT_TARGET_PRECISION = 0.99
DEFAULT_EMBEDDING_MODEL = "efficientnet-lite0"
DEFAULT_WAIT_SECONDS = 600.0  # how long a writer or reader waits for another process using the same database
DEFAULT_FILE_SECONDS = 60.0  # how long reading and decoding one file may take before it is recorded and skipped
