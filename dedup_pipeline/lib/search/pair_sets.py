"""Sets of index pairs ``(i, j)``, ``i < j``, as sorted (n, 2) int64 arrays."""

from __future__ import annotations

import numpy as np

NO_PAIRS = np.zeros((0, 2), dtype=np.int64)


def pair_keys(pairs: np.ndarray) -> np.ndarray:
    """Each pair of non-negative indices (below 2**31) packed into one int64, in pair order."""
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return (pairs[:, 0] << 31) | pairs[:, 1]


def unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """The distinct rows of an (n, 2) array of index pairs, sorted: through :func:`pair_keys`,
    several times faster than ``unique(axis=0)``."""
    keys = np.unique(pair_keys(pairs))
    return np.stack([keys >> 31, keys & ((1 << 31) - 1)], axis=1)


def ordered(i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Unique ``(min, max)`` rows of index pairs, without self-pairs, sorted."""
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    keep = i != j
    return unique_pairs(np.stack([np.minimum(i, j)[keep], np.maximum(i, j)[keep]], axis=1))


def union(*pair_sets: np.ndarray) -> np.ndarray:
    return unique_pairs(np.concatenate([NO_PAIRS, *pair_sets]))


def contains(pair_set: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Per row of ``pairs``, whether it is in ``pair_set`` (both sets of distinct pairs)."""
    return np.isin(pair_keys(pairs), pair_keys(pair_set), assume_unique=True)
