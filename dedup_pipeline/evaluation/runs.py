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
from dedup_pipeline.lib.storage.database import read_first_join, read_match_thresholds, read_table
from dedup_pipeline.lib.storage.features import LiveImages
from dedup_pipeline.lib.storage.store import Store, discard


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
    expected_precision: float | None = None  # of the verifier's first verdicts (base_rate)


def run_pipeline(data: Path, database: Path, **options: object) -> StoredRun:
    """Materialize every asset on ``data`` (default configuration unless ``options`` say
    otherwise) into ``database`` and load the manifest, hashes and embeddings."""
    config = DedupConfig(data=str(data), **options)
    discard(database)
    run = materialize(config, database)
    if not run.success:
        raise RuntimeError(f"pipeline run on {data} failed")
    return load_run(database, config, run.seconds())


def load_run(database: Path, config: DedupConfig, seconds: float = float("nan")) -> StoredRun:
    """What a finished run stored in ``database`` (``config`` is the configuration it ran with), with
    images numbered by position (path order): ``image_id`` k is row k of the manifest and of every
    array, and pairs are in those numbers."""
    with duckdb.connect(str(database), read_only=True) as connection:
        live = LiveImages.read(connection, Store.beside(database))
        manifest, ids = live.manifest, live.image_ids
        pairs = read_table(connection, "similar_pairs")
        position = dict(zip(ids.tolist(), range(len(ids)), strict=True))
        return StoredRun(
            database=database,
            config=config,
            manifest=manifest.with_columns(pl.Series("image_id", np.arange(len(ids)))),
            hashes=live.hashes(list(config.hash_algorithms)),
            embeddings=None if (embeddings := live.embeddings()) is None else np.asarray(embeddings),
            thresholds=read_match_thresholds(connection),
            threshold_table=read_table(connection, "match_thresholds"),
            thumbnails=np.asarray(live.thumbnails()),
            pairs=pairs.with_columns(
                pl.col("image_id_a").replace_strict(position), pl.col("image_id_b").replace_strict(position)
            ).sort("image_id_a", "image_id_b"),
            seconds=seconds,
            expected_precision=(read_first_join(connection) or {}).get("expected_precision"),
        )
