"""The similarity join, from scratch or incrementally: new images against every stored image and
each other, with the stored pairs kept, equal to a from-scratch join of the same images.

Candidates are nominated by pair-local rules (``candidates``: exact digests, hash thresholds,
cosine threshold, geometric views) and, with a verifier, by look-alike lists (``look_alikes``);
each candidate is judged on its own (``judging``). Why an incremental join equals a from-scratch
one, with the same thresholds, verifier, look-alike space and screen cutoff:

* a pair-local rule nominates a pair of old images in both or in neither, so the candidates it
  adds are exactly those with a new image in them (joined new against all);
* look-alike lists are kept exact (``look_alikes.updated_lists``); a pair of old images that
  enters the lists (when a retired image freed a place) is judged, and a stored pair that leaves
  them is dropped unless another rule still nominates it;
* a verdict depends on the pair's own features only (the screen's cutoff is fixed by the first
  join and stored with the calibration), and every feature is computed bit for bit as a
  from-scratch run computes it (per-image features do not depend on their chunk; pair features
  on their pair);
* pairs with a retired image are removed.

Positions are rows of the live images in path order, as a from-scratch run numbers them; pairs are
stored by stable image id with ``image_id_a`` the one whose path sorts first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Protocol

import numpy as np
import polars as pl

from dedup_pipeline.lib.features.thumbnails import thumbnail_descriptors
from dedup_pipeline.lib.search.candidates import local_candidates
from dedup_pipeline.lib.search.criteria import EXACT_EVIDENCE, LOOK_ALIKE_NOMINATION, MatchThresholds
from dedup_pipeline.lib.search.look_alikes import (
    LOOK_ALIKES,
    NO_SIMILARITY,
    PROJECTED_DIMENSION,
    LookAlikeLists,
    look_alike_lists,
    updated_lists,
)
from dedup_pipeline.lib.search.pair_sets import NO_PAIRS, contains, union
from dedup_pipeline.lib.storage.features import LiveImages
from dedup_pipeline.lib.verification.base_rate import ExpectedPrecision
from dedup_pipeline.lib.verification.judging import judge
from dedup_pipeline.lib.verification.pair_features import ImageSignals


@dataclass(frozen=True)
class JoinImages:
    """The live images a join sees, rows in path order: stable ids, digests (content and pixel
    SHA-256 by evidence name) and signals."""

    image_ids: np.ndarray
    digests: Mapping[str, np.ndarray]
    signals: ImageSignals

    @cached_property
    def _id_order(self) -> np.ndarray:
        return np.argsort(self.image_ids, kind="stable")

    @classmethod
    def of(cls, live: LiveImages, hash_algorithms: list[str], with_views: bool) -> JoinImages:
        """The live images of a store with their stored features (view hashes only when a
        verifier needs them)."""
        manifest = live.manifest
        signals = ImageSignals(
            live.thumbnails(),
            live.hashes(hash_algorithms),
            live.embeddings(),
            views=live.view_hashes() if with_views else None,
        )
        return cls(
            live.image_ids, {name: manifest[column].to_numpy() for name, column in EXACT_EVIDENCE.items()}, signals
        )

    def positions(self, ids: np.ndarray) -> np.ndarray:
        """Position of each id among these images, -1 where it is not one of them."""
        ids = np.asarray(ids, dtype=np.int64)
        if not len(self.image_ids):
            return np.full(len(ids), -1, dtype=np.int64)
        sorted_ids = self.image_ids[self._id_order]
        found = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        return np.where(sorted_ids[found] == ids, self._id_order[found], -1)


@dataclass(frozen=True)
class JoinState:
    """What a join leaves for the next one, by stable image id: the images joined, their duplicate
    pairs (every ``similar_pairs`` column), their look-alike lists (``look_alike_ids`` rows, -1
    padded neighbour ids, exact similarities) and projected look-alike vectors, and the screen
    cutoff and the operating threshold the verifier applied (to be stored with the calibration:
    later joins must apply them) with the precision its first verdicts should have."""

    joined: np.ndarray
    pairs: pl.DataFrame
    look_alike_ids: np.ndarray
    neighbours: np.ndarray
    similarities: np.ndarray
    vectors: np.ndarray
    screen_cutoff: float | None
    operating_threshold: float | None = None
    expected: ExpectedPrecision | None = None

    @classmethod
    def empty(cls) -> JoinState:
        return cls(
            joined=np.zeros(0, dtype=np.int64),
            pairs=pl.DataFrame(),
            look_alike_ids=np.zeros(0, dtype=np.int64),
            neighbours=np.zeros((0, LOOK_ALIKES), dtype=np.int64),
            similarities=np.zeros((0, LOOK_ALIKES), dtype=np.int32),
            vectors=np.zeros((0, PROJECTED_DIMENSION), dtype=np.int16),
            screen_cutoff=None,
        )


class JoinProgress(Protocol):
    """Who hears how a join goes: each stage as it starts, then the verifier's alignment."""

    def stage(self, description: str) -> None: ...

    def aligned(self, done: int, total: int) -> None: ...


class _Silent:
    def stage(self, description: str) -> None:
        pass

    def aligned(self, done: int, total: int) -> None:
        pass


SILENT = _Silent()


@dataclass(frozen=True)
class JoinReport:
    """What one join did, for the run's metadata."""

    new_images: int
    retired_images: int
    candidates_judged: int
    pairs_added: int
    pairs_removed: int


def _stored_pairs(previous: JoinState, images: JoinImages) -> tuple[pl.DataFrame, np.ndarray, int]:
    """The previous pairs whose images are both still live, in positions, and how many were dropped."""
    if previous.pairs.is_empty():
        return pl.DataFrame(), NO_PAIRS, 0
    a = images.positions(previous.pairs["image_id_a"].to_numpy())
    b = images.positions(previous.pairs["image_id_b"].to_numpy())
    live = (a >= 0) & (b >= 0)
    kept = previous.pairs.filter(pl.Series(live)).with_columns(
        pl.Series("image_id_a", a[live]), pl.Series("image_id_b", b[live])
    )
    return kept, np.stack([a[live], b[live]], axis=1), int((~live).sum())


def previous_lists(previous: JoinState, images: JoinImages) -> tuple[LookAlikeLists, np.ndarray]:
    """The previous look-alike lists of the images still live, in positions, and which of them are
    stale (held a retired image)."""
    count = len(images.image_ids)
    neighbours = np.full((count, LOOK_ALIKES), -1, dtype=np.int64)
    similarities = np.full((count, LOOK_ALIKES), NO_SIMILARITY, dtype=np.int32)
    stale = np.zeros(count, dtype=bool)
    rows = images.positions(previous.look_alike_ids)
    live = rows >= 0
    listed = previous.neighbours[live]
    translated = np.where(listed >= 0, images.positions(listed.ravel()).reshape(listed.shape), -1)
    stale[rows[live]] = np.any((listed >= 0) & (translated < 0), axis=1)
    neighbours[rows[live]] = translated
    similarities[rows[live]] = previous.similarities[live]
    return LookAlikeLists(neighbours, similarities), stale


def look_alike_vectors(
    previous: JoinState, images: JoinImages, project: Callable[[np.ndarray], np.ndarray], new: np.ndarray
) -> np.ndarray:
    """Every live image's projected vector: stored for joined images, projected for the others."""
    vectors = np.zeros((len(images.image_ids), PROJECTED_DIMENSION), dtype=np.int16)
    rows = images.positions(previous.look_alike_ids)
    have = np.zeros(len(images.image_ids), dtype=bool)
    vectors[rows[rows >= 0]] = previous.vectors[rows >= 0]
    have[rows[rows >= 0]] = True
    missing = np.flatnonzero(~have | new)
    if len(missing):
        vectors[missing] = project(thumbnail_descriptors(images.signals.thumbnails[missing]))
    return vectors


def _with_look_alike_flag(pairs: pl.DataFrame, listed: np.ndarray) -> pl.DataFrame:
    """``found_by`` with ``look-alike`` set where ``listed``; pairs nominated by nothing else and no
    longer listed are dropped (they are not candidates any more)."""
    others = pl.col("found_by").str.replace(f",?{LOOK_ALIKE_NOMINATION}$", "").alias("found_by")
    updated = pairs.with_columns(others).with_columns(
        pl.when(pl.Series(listed))
        .then(pl.concat_str([pl.col("found_by"), pl.lit(LOOK_ALIKE_NOMINATION)], separator=","))
        .otherwise(pl.col("found_by"))
        .str.strip_chars(",")
        .alias("found_by")
    )
    return updated.filter(pl.col("found_by") != "")


def _lists_by_id(
    images: JoinImages, lists: LookAlikeLists | None, vectors: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The look-alike lists and vectors of a join's state, by stable image id (nothing without lists)."""
    if lists is None:
        empty = JoinState.empty()
        return empty.look_alike_ids, empty.neighbours, empty.similarities, empty.vectors
    neighbours = np.where(lists.neighbours >= 0, images.image_ids[np.maximum(lists.neighbours, 0)], -1)
    return images.image_ids, neighbours, lists.similarities, vectors


def join(
    images: JoinImages,
    thresholds: MatchThresholds,
    previous: JoinState | None = None,
    progress: JoinProgress | None = None,
) -> tuple[JoinState, JoinReport]:
    """Join ``images`` (every live image) given what the ``previous`` join of the same thresholds
    left (None: from scratch). Returns the new state (pairs by stable id) and what changed.
    ``progress`` hears each stage as it starts, and the verifier's alignment as it goes."""
    progress = progress or SILENT
    previous = previous or JoinState.empty()
    new = ~np.isin(images.image_ids, previous.joined, assume_unique=True)
    from_scratch = bool(new.all())
    retired = int((~np.isin(previous.joined, images.image_ids, assume_unique=True)).sum())
    stored, stored_positions, removed = _stored_pairs(previous, images)
    signals = images.signals
    verifier = thresholds.verifier
    views = signals.views if verifier is not None else None
    progress.stage(f"finding candidates by the thresholds ({int(new.sum()):,} new of {len(new):,} images)")
    to_judge = local_candidates(
        images.digests, signals.hashes, signals.embeddings, views, thresholds, None if from_scratch else new
    )
    listed, lists, vectors = NO_PAIRS, None, None
    if verifier is not None and thresholds.look_alikes is not None:
        progress.stage(f"{len(to_judge):,} candidates by the thresholds; ranking each image's look-alikes")
        vectors = look_alike_vectors(previous, images, thresholds.look_alikes.vectors, new)
        listed_before = NO_PAIRS
        if from_scratch:
            lists = look_alike_lists(vectors)
        else:
            old_lists, stale = previous_lists(previous, images)
            listed_before = old_lists.pairs()
            lists = updated_lists(old_lists, vectors, new, stale)
        listed = lists.pairs()
        with_new = new[listed[:, 0]] | new[listed[:, 1]]
        # pairs of old images that entered the lists (a retired image freed a place): judged now
        entering = listed[~with_new & ~contains(listed_before, listed)]
        to_judge = union(to_judge, listed[with_new], entering)
    if len(stored_positions):  # pairs of old images that were judged already
        to_judge = to_judge[~contains(stored_positions, to_judge)]
    in_lists = contains(listed, to_judge) if verifier is not None else None
    progress.stage(f"judging {len(to_judge):,} candidate pairs")
    verdicts = judge(to_judge, images.digests, signals, thresholds, in_lists, progress=progress.aligned)
    before = stored.height
    if before and verifier is not None:
        stored = _with_look_alike_flag(stored, contains(listed, stored_positions))
    pairs = pl.concat([stored, verdicts.pairs], how="diagonal_relaxed") if before else verdicts.pairs
    pairs = pairs.sort("image_id_a", "image_id_b")
    pairs = pairs.with_columns(
        pl.Series("image_id_a", images.image_ids[pairs["image_id_a"].to_numpy()]),
        pl.Series("image_id_b", images.image_ids[pairs["image_id_b"].to_numpy()]),
    )
    state = JoinState(
        np.sort(images.image_ids),
        pairs,
        *_lists_by_id(images, lists, vectors),
        verdicts.screen_cutoff,
        verdicts.operating_threshold,
        verdicts.expected,
    )
    report = JoinReport(
        new_images=int(new.sum()),
        retired_images=retired,
        candidates_judged=len(to_judge),
        pairs_added=verdicts.pairs.height,
        pairs_removed=removed + before - (stored.height if before else 0),
    )
    return state, report


def measured_pairs(
    images: JoinImages, thresholds: MatchThresholds, state: JoinState, pairs: np.ndarray
) -> pl.DataFrame:
    """Every ``similar_pairs`` column of ``pairs`` ((n, 2) positions, ``i < j``, sorted), duplicates
    or not, as the join that left ``state`` scores its candidates (its operating threshold and share
    of copies), every pair aligned (none is turned away by the screen: they are few, and a score is
    wanted for each): for pairs a person marked duplicates that the join did not find, and for the
    nearest-neighbour sample."""
    applied = thresholds
    if thresholds.verifier is not None:
        verifier = thresholds.verifier
        if state.operating_threshold is not None:
            verifier = verifier.with_threshold(state.operating_threshold)
        applied = replace(
            thresholds,
            verifier=verifier,
            screen_cutoff=0.0,
            copy_share=thresholds.copy_share
            if thresholds.copy_share is not None or state.expected is None
            else state.expected.copy_share,
        )
    return judge(pairs, images.digests, images.signals, applied, everything=True).pairs
