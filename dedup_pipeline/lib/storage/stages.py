"""Which pipeline stages are already done for this configuration and this data, so an interrupted
or repeated run can skip them (``dedup-pipeline run --resume``).

Each asset, after writing its tables, records a row in ``pipeline_stages``: the stage, a fingerprint
of the configuration that decides its output, and a signature of the dataset (paths, splits,
labels, file sizes and modification times). A stage counts as done when both still match; the
dataset's signature is computed by the manifest stage and carried by every later one.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Mapping, Sequence

import duckdb
import polars as pl

from dedup_pipeline.lib.inputs.sources import ImageSource

STAGES_TABLE = "pipeline_stages"
FIRST_STAGE = "image_features"
SCHEMA = {"stage": pl.String, "config": pl.String, "dataset": pl.String, "finished_at": pl.Datetime("us")}


def config_fingerprint(settings: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dataset_signature(images: Sequence[ImageSource]) -> str:
    """Changes when an image is added, removed, moved to another split or label, or rewritten."""
    digest = hashlib.sha256()
    for source in sorted(images, key=lambda image: image.path):
        try:
            stat = os.stat(source.file)
            facts = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            facts = "unreadable"
        digest.update(f"{source.path}\t{source.split}\t{source.label}\t{facts}\n".encode())
    return digest.hexdigest()[:16]


def _recorded(connection: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    tables = {row[0] for row in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    if STAGES_TABLE not in tables:
        return pl.DataFrame(schema=SCHEMA)
    return connection.execute(f"SELECT * FROM {STAGES_TABLE}").pl()


def record_stage(connection: duckdb.DuckDBPyConnection, stage: str, config: str, dataset: str | None = None) -> None:
    """Record ``stage`` as done; ``dataset`` defaults to the signature the first stage recorded."""
    recorded = _recorded(connection)
    if dataset is None:
        first = recorded.filter(pl.col("stage") == FIRST_STAGE)["dataset"]
        dataset = first[0] if len(first) else "unknown"
    row = pl.DataFrame(
        [{"stage": stage, "config": config, "dataset": dataset, "finished_at": datetime.datetime.now()}], schema=SCHEMA
    )
    connection.register("_stage", row.to_arrow())
    try:
        connection.execute(f"CREATE TABLE IF NOT EXISTS {STAGES_TABLE} AS SELECT * FROM _stage LIMIT 0")
        connection.execute(f"DELETE FROM {STAGES_TABLE} WHERE stage = ?", [stage])
        connection.execute(f"INSERT INTO {STAGES_TABLE} SELECT * FROM _stage")
    finally:
        connection.unregister("_stage")


def done_stages(connection: duckdb.DuckDBPyConnection, config: str, dataset: str) -> set[str]:
    recorded = _recorded(connection)
    return set(recorded.filter((pl.col("config") == config) & (pl.col("dataset") == dataset))["stage"].to_list())


def stages_to_run(order: Sequence[str], done: set[str]) -> list[str]:
    """``order`` (stages, upstream first) from the first one not done: a stage reruns when it or
    anything before it must."""
    for position, stage in enumerate(order):
        if stage not in done:
            return list(order[position:])
    return []
