"""Run the real pipeline on an evaluation dataset and load what it stored."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from dedup_pipeline.cli import materialize
from dedup_pipeline.defs.resources import DedupConfig
from dedup_pipeline.lib.search.criteria import MatchThresholds
from dedup_pipeline.lib.storage.database import (
    read_embeddings,
    read_hashes,
    read_manifest,
    read_match_thresholds,
    read_table,
    read_thumbnails,
)


@dataclass
class StoredRun:
    database: Path
    config: DedupConfig
    manifest: pl.DataFrame
    hashes: dict[str, np.ndarray]
    embeddings: np.ndarray | None
    thresholds: MatchThresholds  # what the run used (calibrated or fixed)
    threshold_table: pl.DataFrame
    thumbnails: np.ndarray
    pairs: pl.DataFrame  # the run's similar_pairs
    seconds: float


def run_pipeline(data: Path, database: Path, **options: object) -> StoredRun:
    """Materialize every asset on ``data`` (default configuration unless ``options`` say
    otherwise) into ``database`` and load the manifest, hashes and embeddings."""
    config = DedupConfig(data=str(data), **options)
    database.unlink(missing_ok=True)
    result = materialize(config, database)
    if not result.success:
        raise RuntimeError(f"pipeline run on {data} failed")
    seconds = sum(
        float(entry.value)
        for materialization in result.get_asset_materialization_events()
        for key, entry in materialization.materialization.metadata.items()
        if key.endswith("seconds")
    )
    return load_run(database, config, seconds)


def load_run(database: Path, config: DedupConfig, seconds: float = float("nan")) -> StoredRun:
    """What a finished run stored in ``database`` (``config`` is the configuration it ran with)."""
    with duckdb.connect(str(database), read_only=True) as connection:
        return StoredRun(
            database=database,
            config=config,
            manifest=read_manifest(connection),
            hashes=read_hashes(connection, list(config.hash_algorithms)),
            embeddings=read_embeddings(connection),
            thresholds=read_match_thresholds(connection),
            threshold_table=read_table(connection, "match_thresholds"),
            thumbnails=read_thumbnails(connection),
            pairs=read_table(connection, "similar_pairs", order_by="image_id_a, image_id_b"),
            seconds=seconds,
        )
