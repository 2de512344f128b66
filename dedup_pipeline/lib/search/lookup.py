"""Checking images against a store without changing it: each image's duplicates among the stored
images, judged exactly as a drop of these images would be (the same extraction settings,
thresholds, verifier, look-alike lists and screen cutoff). Read-only: nothing is written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from dedup_pipeline.lib.features.extraction import extract
from dedup_pipeline.lib.features.image_work import ExtractionSettings
from dedup_pipeline.lib.inputs.sources import ImageSource
from dedup_pipeline.lib.runtime.parallel import available_cores
from dedup_pipeline.lib.search.criteria import EXACT_EVIDENCE
from dedup_pipeline.lib.search.similar_pairs import JoinImages, join
from dedup_pipeline.lib.storage.database import calibration_id, read_join_state, read_match_thresholds
from dedup_pipeline.lib.storage.features import LiveImages
from dedup_pipeline.lib.storage.store import Store
from dedup_pipeline.lib.storage.stored_rows import Rows, stacked
from dedup_pipeline.lib.verification.pair_features import ImageSignals

CHECK_SPLIT = "checked"


class StoreNotReady(Exception):
    """The database has no joined store to check against."""


@dataclass(frozen=True)
class CheckResult:
    duplicates: pl.DataFrame  # checked, path, split, label, hamming, cosine, verification_score, evidence
    failures: pl.DataFrame  # checked, reason


def _stacked(stored: ImageSignals, queries: ImageSignals) -> ImageSignals:
    def both(first: Rows | None, second: np.ndarray | None) -> Rows | None:
        return None if first is None or second is None else stacked(first, second)

    return ImageSignals(
        both(stored.thumbnails, queries.thumbnails),
        {name: np.concatenate([words, queries.hashes[name]]) for name, words in stored.hashes.items()},
        both(stored.embeddings, queries.embeddings),
        views=np.concatenate([stored.views, queries.views]) if stored.thumbnails is not None else None,
    )


def stored_duplicates(files: list[Path], database: Path, workers: int = 0) -> CheckResult:
    """The stored duplicates of each of ``files``."""
    store = Store.beside(database)
    recorded = store.settings()
    if recorded is None or not database.exists():
        raise StoreNotReady(f"no store beside {database}: run `dedup-pipeline run --data ... --db {database}` first")
    settings = ExtractionSettings.from_record(recorded)
    with duckdb.connect(str(database), read_only=True) as connection:
        thresholds = read_match_thresholds(connection)
        state = read_join_state(connection, calibration_id(connection))
        if state is None:
            raise StoreNotReady(f"{database} has no join under its current calibration: run the pipeline first")
        live = LiveImages.read(connection, store)
    verifies = thresholds.verifier is not None
    stored = JoinImages.of(live, list(settings.hash_algorithms), with_thumbnails=verifies)
    manifest, ids = live.manifest, live.image_ids
    sources = [ImageSource(str(file), CHECK_SPLIT, None, str(file)) for file in files]
    extracted = extract(sources, settings, workers=workers or available_cores())
    checked = extracted.manifest
    query_ids = (ids.max(initial=-1) + 1 + np.arange(checked.height)).astype(np.int64)
    queries = ImageSignals(
        extracted.thumbnails if verifies else None,
        {name: extracted.hashes[name] for name in stored.signals.hashes},
        extracted.embeddings,
        views=extracted.view_hashes if verifies else None,
    )
    digests = {
        name: np.concatenate([manifest[column].to_numpy(), checked[column].to_numpy()])
        for name, column in EXACT_EVIDENCE.items()
    }
    images = JoinImages(np.concatenate([ids, query_ids]), digests, _stacked(stored.signals, queries))
    joined, _ = join(images, thresholds, state)
    found = joined.pairs.filter(pl.col("image_id_a").is_in(query_ids) ^ pl.col("image_id_b").is_in(query_ids))
    query_side = pl.DataFrame({"query_id": query_ids, "checked": checked["path"]})
    stored_side = manifest.select("image_id", "path", "split", "label")
    duplicates = (
        found.with_columns(
            pl.when(pl.col("image_id_a").is_in(query_ids)).then("image_id_a").otherwise("image_id_b").alias("query_id"),
            pl.when(pl.col("image_id_a").is_in(query_ids)).then("image_id_b").otherwise("image_id_a").alias("image_id"),
        )
        .join(query_side, on="query_id")
        .join(stored_side, on="image_id")
        .select("checked", "path", "split", "label", "hamming", "cosine", "verification_score", "evidence")
        .sort("checked", "verification_score", "path", descending=[False, True, False], nulls_last=True)
    )
    failures = extracted.failures.select(pl.col("path").alias("checked"), "reason")
    return CheckResult(duplicates, failures)
