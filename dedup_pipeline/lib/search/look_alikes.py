"""Look-alike lists: each image's ``LOOK_ALIKES`` nearest images by thumbnail descriptor, the
candidates the pair verifier judges besides those the thresholds and geometric views nominate.

"The ten nearest" depends on the whole dataset, so an incremental join has to keep it exact: when
images arrive, each new image gets its list from a search over everything, and an old image's list
changes only where a new image beats its tenth entry (merged in) or where an entry was retired
(searched again). Pairs that fall out of every list stop being look-alike candidates. For that to
give exactly the lists a from-scratch run gives, the ranking must not depend on how the work was
split up:

* the space is frozen: the projection (PCA of the descriptors to ``PROJECTED_DIMENSION``) is fit
  once, with the calibration, and stored; a later drop projects its images with it;
* similarities are exact: projected unit vectors are rounded to integers of at most ``QUANTUM``,
  so a dot product is an integer below 2**24 and float32 products (BLAS, faiss) add it up exactly
  in any order;
* ties are broken by position (the live images in path order), which an incremental run and a
  from-scratch run share.

Rounding to 1/511 moves a similarity by about 1e-3, far below the gaps that separate a near-duplicate
from an image's other look-alikes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import faiss
import numpy as np

from dedup_pipeline.lib.search.pair_sets import ordered

LOOK_ALIKES = 10  # per image, verified besides the pairs thresholds and views nominate
PROJECTED_DIMENSION = 64
QUANTUM = 511  # PROJECTED_DIMENSION * QUANTUM**2 < 2**24: integer dot products are exact in float32
FIT_SAMPLE = 20_000  # descriptors the projection is fit on
TIE_MARGIN = 8  # extra neighbours fetched, so ties at the tenth place are usually settled in one search
SIMILARITY_BLOCK = 1 << 24  # similarities held at once when merging new images into old lists
NO_SIMILARITY = np.iinfo(np.int32).min


@dataclass(frozen=True)
class LookAlikeSpace:
    """A frozen projection of thumbnail descriptors: ``(descriptor - mean) @ components``, scaled
    to unit length and rounded to integers of at most ``QUANTUM``."""

    mean: np.ndarray  # (descriptor dimension,) float64
    components: np.ndarray  # (descriptor dimension, projected dimension) float64

    def vectors(self, descriptors: np.ndarray) -> np.ndarray:
        """(n, projected dimension) int16 vectors; float64 all the way, so a descriptor's vector
        does not depend on the block it was projected in."""
        projected = (np.asarray(descriptors, dtype=np.float64) - self.mean) @ self.components
        norms = np.linalg.norm(projected, axis=1, keepdims=True)
        unit = projected / np.where(norms > 0, norms, 1.0)
        return np.round(unit * QUANTUM).astype(np.int16)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, mean=self.mean, components=self.components)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LookAlikeSpace:
        with np.load(io.BytesIO(data)) as stored:
            return cls(stored["mean"], stored["components"])


def fit_space(descriptors: np.ndarray, dimension: int = PROJECTED_DIMENSION) -> LookAlikeSpace:
    """PCA of (an even sample of at most ``FIT_SAMPLE``) descriptors to ``dimension`` components;
    with fewer descriptors than that, as many components as they span, the rest zero."""
    data = np.asarray(descriptors, dtype=np.float64).reshape(len(descriptors), -1)
    sample = data[:: max(1, len(data) // FIT_SAMPLE)]
    mean = sample.mean(axis=0) if len(sample) else np.zeros(data.shape[1])
    components = np.zeros((data.shape[1], dimension))
    if len(sample):
        _, _, right = np.linalg.svd(sample - mean, full_matrices=False)
        kept = min(dimension, len(right))
        components[:, :kept] = right[:kept].T
    return LookAlikeSpace(mean, components)


@dataclass(frozen=True)
class LookAlikeLists:
    """Per image (row = position), its look-alikes most similar first (ties: lower position first),
    padded with -1 / ``NO_SIMILARITY`` when the dataset has fewer other images."""

    neighbours: np.ndarray  # (n, LOOK_ALIKES) int64 positions
    similarities: np.ndarray  # (n, LOOK_ALIKES) int32 exact integer dot products

    def pairs(self) -> np.ndarray:
        """Unique ``(i, j)``, ``i < j``, where either is in the other's list, sorted."""
        rows = np.repeat(np.arange(len(self.neighbours)), self.neighbours.shape[1])
        found = self.neighbours.ravel()
        keep = found >= 0
        return ordered(rows[keep], found[keep])


def _ranked(positions: np.ndarray, similarities: np.ndarray, count: int) -> LookAlikeLists:
    """Each row's entries ordered by similarity (descending), then position (ascending), empty
    entries (position -1) last, cut to ``count`` columns."""
    empty = positions < 0
    last = np.iinfo(np.int64).max
    similarity_key = np.where(empty, last, -similarities.astype(np.int64))
    position_key = np.where(empty, last, positions)
    rows = np.broadcast_to(np.arange(len(positions))[:, None], positions.shape)
    order = np.lexsort((position_key.ravel(), similarity_key.ravel(), rows.ravel())).reshape(positions.shape)
    order = order[:, :count] - (np.arange(len(positions)) * positions.shape[1])[:, None]
    chosen = np.take_along_axis(positions, order, axis=1)
    chosen_similarity = np.take_along_axis(similarities.astype(np.int64), order, axis=1)
    padding = max(0, count - chosen.shape[1])
    chosen = np.pad(chosen, ((0, 0), (0, padding)), constant_values=-1)
    chosen_similarity = np.pad(chosen_similarity, ((0, 0), (0, padding)), constant_values=NO_SIMILARITY)
    return LookAlikeLists(
        chosen.astype(np.int64), np.where(chosen >= 0, chosen_similarity, NO_SIMILARITY).astype(np.int32)
    )


def _exact_row(query: np.ndarray, base: np.ndarray, own_position: int, count: int) -> LookAlikeLists:
    """One query's list from every similarity (the fallback when ties reach past what was fetched)."""
    similarities = np.rint(base.astype(np.float32) @ query.astype(np.float32)).astype(np.int64)
    positions = np.arange(len(base), dtype=np.int64)
    if own_position >= 0:
        positions[own_position] = -1
    return _ranked(positions[None, :], similarities[None, :], count)


def nearest(
    queries: np.ndarray, base: np.ndarray, count: int = LOOK_ALIKES, query_positions: np.ndarray | None = None
) -> LookAlikeLists:
    """Each query's ``count`` most similar rows of ``base`` (vectors from :meth:`LookAlikeSpace.vectors`),
    exactly, ties to the lower position; a query is not its own look-alike when ``query_positions``
    gives its row in ``base``. faiss finds the ``count + 1 + TIE_MARGIN`` best; a row whose
    ``count``-th entry ties with the least similar one fetched is searched again in full."""
    own = np.full(len(queries), -1, dtype=np.int64) if query_positions is None else np.asarray(query_positions)
    fetch = min(len(base), count + 1 + TIE_MARGIN)
    if fetch == 0 or not len(queries):
        return LookAlikeLists(
            np.full((len(queries), count), -1, dtype=np.int64), np.full((len(queries), count), NO_SIMILARITY, np.int32)
        )
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(np.ascontiguousarray(base, dtype=np.float32))
    similarities, positions = index.search(np.ascontiguousarray(queries, dtype=np.float32), fetch)
    similarities = np.rint(similarities).astype(np.int64)
    least_fetched = similarities.min(axis=1)
    positions = np.where(positions == own[:, None], -1, positions.astype(np.int64))
    lists = _ranked(positions, similarities, count)
    if fetch < len(base):
        unsettled = np.flatnonzero(lists.similarities[:, count - 1].astype(np.int64) <= least_fetched)
        for row in unsettled:
            exact = _exact_row(queries[row], base, int(own[row]), count)
            lists.neighbours[row], lists.similarities[row] = exact.neighbours[0], exact.similarities[0]
    return lists


def look_alike_lists(vectors: np.ndarray, count: int = LOOK_ALIKES) -> LookAlikeLists:
    """Every image's list, from scratch."""
    return nearest(vectors, vectors, count, np.arange(len(vectors)))


def _arrivals_beating(
    lists: LookAlikeLists, vectors: np.ndarray, rows: np.ndarray, arrivals: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(row, arrival, similarity)`` (positions, exact similarity) wherever an arrival, on its
    own, beats the row's last entry (more similar, or as similar at a lower position; any arrival
    beats a list not full yet), for blocks of ``rows`` (positions of listed images). Few do: the
    full products are only compared with the last entry once, and the ties settled on the few."""
    count = lists.neighbours.shape[1]
    arriving = vectors[arrivals].astype(np.float32)
    every = vectors.astype(np.float32)
    size = max(1, SIMILARITY_BLOCK // max(len(arrivals), 1))
    for start in range(0, len(rows), size):
        block = rows[start : start + size]
        scores = every[block] @ arriving.T  # exact integers in float32: compared as they are
        last_similarity = lists.similarities[block, count - 1]  # NO_SIMILARITY where not full
        row, arrival = np.nonzero(scores >= last_similarity.astype(np.float32)[:, None])
        similarity = scores[row, arrival].astype(np.int64)
        last_position = lists.neighbours[block[row], count - 1]
        beats = (last_position < 0) | (similarity > last_similarity[row]) | (arrivals[arrival] < last_position)
        yield block[row[beats]], arrivals[arrival[beats]], similarity[beats]


def lists_entered(lists: LookAlikeLists, vectors: np.ndarray, arrivals: np.ndarray) -> np.ndarray:
    """``(row, arrival)`` pairs (positions) where an arrival, were it the only new image, would
    enter the row's list; rows are every listed image but the arrivals."""
    rows = np.setdiff1d(np.arange(len(lists.neighbours)), arrivals)
    found = [np.zeros((0, 2), dtype=np.int64)]
    for row, arrival, _ in _arrivals_beating(lists, vectors, rows, arrivals):
        found.append(np.stack([row, arrival], axis=1))
    return np.concatenate(found)


def updated_lists(lists: LookAlikeLists, vectors: np.ndarray, new: np.ndarray, stale: np.ndarray) -> LookAlikeLists:
    """The lists after a drop, equal to :func:`look_alike_lists` of ``vectors``.

    ``vectors`` are the live images' (rows = positions, path order); ``lists`` holds, in those
    positions, the lists the images already joined had before the drop (rows of ``new`` images
    are ignored); ``stale`` marks old images whose list held a retired image. New and stale images
    are searched in full. Every other old image keeps its list unless a new image beats its last
    entry: a list was the best ``count`` of the old images, and no image left it, so the best
    ``count`` now are among it and the new images."""
    count = lists.neighbours.shape[1]
    neighbours, similarities = lists.neighbours.copy(), lists.similarities.copy()
    searched = np.flatnonzero(new | stale)
    found = nearest(vectors[searched], vectors, count, searched)
    neighbours[searched], similarities[searched] = found.neighbours, found.similarities
    arrivals = np.flatnonzero(new)
    kept = np.flatnonzero(~(new | stale))
    if not len(arrivals) or not len(kept):
        return LookAlikeLists(neighbours, similarities)
    for row, arrival, similarity in _arrivals_beating(
        LookAlikeLists(neighbours, similarities), vectors, kept, arrivals
    ):
        if not len(row):
            continue
        # each changed row's list and the arrivals that beat it, in a (rows, count + most beating) table
        changed, slot_of = np.unique(row, return_inverse=True)
        firsts = np.searchsorted(slot_of, np.arange(len(changed)))  # row is sorted: block order
        column = np.arange(len(row)) - firsts[slot_of]
        width = int(column.max()) + 1
        beating = np.full((len(changed), width), -1, dtype=np.int64)
        beating_similarity = np.full((len(changed), width), NO_SIMILARITY, dtype=np.int64)
        beating[slot_of, column], beating_similarity[slot_of, column] = arrival, similarity
        candidates = np.concatenate([neighbours[changed], beating], axis=1)
        candidate_similarities = np.concatenate([similarities[changed].astype(np.int64), beating_similarity], axis=1)
        merged = _ranked(candidates, candidate_similarities, count)
        neighbours[changed], similarities[changed] = merged.neighbours, merged.similarities
    return LookAlikeLists(neighbours, similarities)
