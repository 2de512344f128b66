"""Exact Hamming-distance joins of packed binary hashes.

Two exact methods, chosen per join by estimated cost (``method="auto"``):

- multi-index hashing (:mod:`multi_index_hashing`) for 64-bit hashes: sorts and equi-joins on
  hash chunks, near-linear in N for the thresholds duplicate search uses;
- blockwise brute force with ``numpy.bitwise_count`` otherwise (wider hashes, small inputs, large
  thresholds): each block of query rows is compared only with the rows after it, and a block's
  scratch space is bounded by ``max_block_cells``.

Neither builds an N x N matrix; both return exactly the pairs within the threshold.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from dedup_pipeline.lib.search.multi_index_hashing import Plan, multi_index_pairs, plan_join

DEFAULT_BLOCK_CELLS = 1 << 24
JoinMethod = Literal["auto", "brute-force", "multi-index"]


def _multi_index_plan(left: np.ndarray, right_count: int | None, threshold: int, method: JoinMethod) -> Plan | None:
    """The multi-index plan for joining ``left`` with ``right_count`` hashes (None: a self-join),
    or None for brute force."""
    if method == "brute-force" or left.shape[1] != 1:
        if method == "multi-index":
            raise ValueError("multi-index hashing joins 64-bit (one-word) hashes only")
        return None
    plan = plan_join(left.shape[0], right_count, threshold)
    if plan is None and method == "multi-index":
        raise ValueError(f"no multi-index plan for threshold {threshold}")
    return plan


def hamming_pairs(
    hashes: np.ndarray, threshold: int, max_block_cells: int = DEFAULT_BLOCK_CELLS, method: JoinMethod = "auto"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` with Hamming distance <= ``threshold``.

    ``hashes`` is (N, W) uint64 (W words per hash). Returns ``(i, j, distance)`` arrays sorted by
    ``(i, j)``.
    """
    words = np.ascontiguousarray(hashes, dtype=np.uint64)
    if words.ndim != 2:
        raise ValueError(f"hashes must be (N, words), got shape {words.shape}")
    plan = _multi_index_plan(words, None, threshold, method)
    if plan is not None:
        return multi_index_pairs(words[:, 0], None, threshold, plan)
    count = words.shape[0]
    found_i, found_j, found_d = [], [], []
    block = max(1, max_block_cells // max(1, count * words.shape[1]))
    for start in range(0, count, block):
        stop = min(count, start + block)
        # rows [start, stop) against rows [start, N): the diagonal block keeps only j > i.
        distance = np.zeros((stop - start, count - start), dtype=np.uint16)
        for word in range(words.shape[1]):
            distance += np.bitwise_count(words[start:stop, word, None] ^ words[None, start:, word])
        rows, cols = np.nonzero(distance <= threshold)
        keep = cols > rows
        rows, cols = rows[keep], cols[keep]
        found_i.append(rows + start)
        found_j.append(cols + start)
        found_d.append(distance[rows, cols])
    if not found_i:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=np.int64)
    return (
        np.concatenate(found_i).astype(np.int64),
        np.concatenate(found_j).astype(np.int64),
        np.concatenate(found_d).astype(np.int64),
    )


def hamming_pairs_between(
    left: np.ndarray,
    right: np.ndarray,
    threshold: int,
    max_block_cells: int = DEFAULT_BLOCK_CELLS,
    method: JoinMethod = "auto",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ``(i, j)`` with Hamming distance between ``left[i]`` and ``right[j]`` <= ``threshold``
    (a full rectangular join, by the same methods as :func:`hamming_pairs`), sorted by ``(i, j)``."""
    a = np.ascontiguousarray(left, dtype=np.uint64)
    b = np.ascontiguousarray(right, dtype=np.uint64)
    plan = _multi_index_plan(a, b.shape[0], threshold, method)
    if plan is not None:
        return multi_index_pairs(a[:, 0], b[:, 0], threshold, plan)
    found_i, found_j, found_d = (
        [np.zeros(0, dtype=np.int64)],
        [np.zeros(0, dtype=np.int64)],
        [np.zeros(0, dtype=np.int64)],
    )
    block = max(1, max_block_cells // max(1, b.shape[0] * b.shape[1]))
    for start in range(0, a.shape[0], block):
        stop = min(a.shape[0], start + block)
        distance = np.zeros((stop - start, b.shape[0]), dtype=np.uint16)
        for word in range(a.shape[1]):
            distance += np.bitwise_count(a[start:stop, word, None] ^ b[None, :, word])
        rows, cols = np.nonzero(distance <= threshold)
        found_i.append(rows + start)
        found_j.append(cols)
        found_d.append(distance[rows, cols].astype(np.int64))
    return np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_d)


def mirror_aware_pairs(
    hashes: np.ndarray, mirrored: np.ndarray, threshold: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``i < j`` whose hashes are within ``threshold`` directly or with one image mirrored
    (``mirrored[k]`` is the hash of image k flipped left-right); the distance is the smaller one."""
    i, j, _ = hamming_pairs(hashes, threshold)
    ci, cj, _ = hamming_pairs_between(hashes, mirrored, threshold)
    keep = ci != cj
    ci, cj = np.minimum(ci[keep], cj[keep]), np.maximum(ci[keep], cj[keep])
    pairs = np.unique(np.concatenate([np.stack([i, j], axis=1), np.stack([ci, cj], axis=1)]).reshape(-1, 2), axis=0)
    i, j = pairs[:, 0], pairs[:, 1]
    return i, j, mirror_aware_distances(hashes, mirrored, i, j)


def mirror_aware_distances(hashes: np.ndarray, mirrored: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Mirror-aware distance of given pairs of images of one hash array."""
    return mirror_aware_cross_distances(hashes, mirrored, hashes, mirrored, i, j)


def mirror_aware_cross_distances(
    left: np.ndarray,
    left_mirrored: np.ndarray,
    right: np.ndarray,
    right_mirrored: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
) -> np.ndarray:
    """The smaller of the direct distance between ``left[i]`` and ``right[j]`` and the distance with
    either side mirrored (mirroring both sides is the direct distance again, up to hash rounding)."""
    return np.minimum.reduce(
        [
            cross_distances(left, right, i, j),
            cross_distances(left, right_mirrored, i, j),
            cross_distances(left_mirrored, right, i, j),
        ]
    )


def cross_distances(left: np.ndarray, right: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Distance between ``left[i]`` and ``right[j]`` for given index pairs."""
    return (
        np.bitwise_count(np.asarray(left, dtype=np.uint64)[i] ^ np.asarray(right, dtype=np.uint64)[j])
        .sum(axis=1)
        .astype(np.int64)
    )


def pair_distances(hashes: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Hamming distance of given pairs (for evidence found by another criterion)."""
    return cross_distances(hashes, hashes, i, j)
