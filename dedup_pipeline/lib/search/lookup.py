"""Checking images against a store without changing it: each image's duplicates among the stored
images, found and judged as a drop of that image alone would be (the same extraction settings,
candidate rules, look-alike lists, thresholds, verifier and screen cutoff), so an image's answer
does not depend on which other images are checked with it. Read-only: nothing is written."""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from dedup_pipeline.defaults import DEFAULT_WAIT_SECONDS
from dedup_pipeline.lib.features.extraction import extract
from dedup_pipeline.lib.features.image_work import ExtractionSettings
from dedup_pipeline.lib.inputs.sources import ImageSource, stored_path
from dedup_pipeline.lib.runtime.parallel import available_cores
from dedup_pipeline.lib.search.candidates import local_candidates
from dedup_pipeline.lib.search.criteria import EXACT_EVIDENCE
from dedup_pipeline.lib.search.look_alikes import LookAlikeSpace, lists_entered, nearest
from dedup_pipeline.lib.search.pair_sets import NO_PAIRS, contains, ordered, union
from dedup_pipeline.lib.search.similar_pairs import JoinImages, JoinState, look_alike_vectors, previous_lists
from dedup_pipeline.lib.storage.database import (
    calibration_id,
    read_join_state,
    read_match_thresholds,
    table_names,
)
from dedup_pipeline.lib.storage.features import LiveImages
from dedup_pipeline.lib.storage.store import Store
from dedup_pipeline.lib.storage.stored_rows import stacked
from dedup_pipeline.lib.storage.write_lock import connect
from dedup_pipeline.lib.verification.judging import judge
from dedup_pipeline.lib.verification.pair_features import ImageSignals

CHECK_SPLIT = "checked"


class StoreNotReady(Exception):
    """The database has no joined store to check against."""


@dataclass(frozen=True)
class CheckResult:
    duplicates: pl.DataFrame  # checked, path, split, label, hamming, cosine, verification_score, evidence
    failures: pl.DataFrame  # checked, reason


def _look_alike_pairs(images: JoinImages, state: JoinState, space: LookAlikeSpace, query: np.ndarray) -> np.ndarray:
    """Pairs (stored position, query position) the look-alike lists would hold after a drop of each
    query alone: the stored images in its own list, and those whose list it would enter."""
    vectors = look_alike_vectors(state, images, space.vectors, query)
    lists, _ = previous_lists(state, images)
    arrivals, stored = np.flatnonzero(query), np.flatnonzero(~query)
    own = nearest(vectors[arrivals], vectors[stored]).neighbours  # among the stored images only
    found = own >= 0
    own_pairs = ordered(np.repeat(arrivals, own.shape[1])[found.ravel()], stored[own[found]])
    entered = lists_entered(lists, vectors, arrivals)
    return union(own_pairs, ordered(entered[:, 0], entered[:, 1]))


def stored_duplicates(
    files: list[Path], database: Path, workers: int = 0, wait_seconds: float = DEFAULT_WAIT_SECONDS
) -> CheckResult:
    """The stored duplicates of each of ``files`` (waiting up to ``wait_seconds`` while a run has the
    database open)."""
    store = Store.beside(database)
    store_settings = store.settings()
    if store_settings is None or not database.exists():
        raise StoreNotReady(f"no store beside {database}: run `dedup-pipeline run --data ... --db {database}` first")
    settings = ExtractionSettings.from_record(store_settings)
    with closing(connect(database, read_only=True, wait_seconds=wait_seconds)) as connection:
        state = None
        if "match_thresholds" in table_names(connection):
            thresholds = read_match_thresholds(connection)
            state = read_join_state(connection, calibration_id(connection))
        if state is None:
            raise StoreNotReady(
                f"{database} has no join under its current calibration yet (is its first run still under way?): "
                "run the pipeline first"
            )
        live = LiveImages.read(connection, store)
    verifies = thresholds.verifier is not None
    stored = JoinImages.of(live, list(settings.hash_algorithms), with_views=verifies)
    manifest, ids, count = live.manifest, live.image_ids, len(live.image_ids)
    sources = [ImageSource(stored_path(str(file)), CHECK_SPLIT, None, stored_path(str(file))) for file in files]
    extracted = extract(sources, settings, workers=workers or available_cores())
    checked = extracted.manifest
    query = np.r_[np.zeros(count, dtype=bool), np.ones(checked.height, dtype=bool)]
    signals = ImageSignals(
        stacked(stored.signals.thumbnails, extracted.thumbnails),
        {name: np.concatenate([words, extracted.hashes[name]]) for name, words in stored.signals.hashes.items()},
        None if stored.signals.embeddings is None else stacked(stored.signals.embeddings, extracted.embeddings),
        views=np.concatenate([stored.signals.views, extracted.view_hashes]) if verifies else None,
    )
    digests = {
        name: np.concatenate([manifest[column].to_numpy(), checked[column].to_numpy()])
        for name, column in EXACT_EVIDENCE.items()
    }
    views = signals.views if verifies else None
    pairs = local_candidates(digests, signals.hashes, signals.embeddings, views, thresholds, query)
    listed = NO_PAIRS
    if verifies and thresholds.look_alikes is not None and checked.height:
        images = JoinImages(np.r_[ids, ids.max(initial=-1) + 1 + np.arange(checked.height)], digests, signals)
        listed = _look_alike_pairs(images, state, thresholds.look_alikes, query)
    pairs = union(pairs, listed)
    pairs = pairs[query[pairs[:, 0]] != query[pairs[:, 1]]]  # a checked image against a stored one
    verdicts = judge(pairs, digests, signals, thresholds, contains(listed, pairs) if verifies else None).pairs
    names = pl.DataFrame({"position": np.arange(count + checked.height)}).with_columns(
        pl.Series("checked", [None] * count + checked["path"].to_list(), dtype=pl.String)
    )
    stored_side = manifest.select("path", "split", "label").with_row_index("stored")
    duplicates = (
        verdicts.rename({"image_id_a": "stored", "image_id_b": "position"})  # stored rows come first
        .with_columns(pl.col("stored").cast(pl.UInt32))
        .join(names, on="position")
        .join(stored_side, on="stored")
        .select("checked", "path", "split", "label", "hamming", "cosine", "verification_score", "evidence")
        .sort("checked", "verification_score", "path", descending=[False, True, False], nulls_last=True)
    )
    failures = extracted.failures.select(pl.col("path").alias("checked"), "reason")
    return CheckResult(duplicates, failures)
