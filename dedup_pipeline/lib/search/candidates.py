"""Candidate pairs nominated by rules that look at the pair alone: identical bytes or pixels, a hash
within its Hamming threshold (directly or mirrored), an embedding cosine at or above its threshold,
and a geometric view of one image within ``VIEW_THRESHOLD`` bits of the other's pHash.

Because each rule is a property of the pair, the candidates of a dataset are those of its images
before a drop plus those with a new image in them: a join of the new images against every image
(``new`` below) finds exactly the pairs a self-join of everything adds. Every rule compares integers
or re-scores with the per-pair cosine, so a pair is nominated in both or in neither.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dedup_pipeline.lib.features.views import IDENTITY, VIEW_THRESHOLD, VIEWS, view_pairs
from dedup_pipeline.lib.search.approximate_cosine_join import cosine_range_join
from dedup_pipeline.lib.search.cosine_join import cosine_pairs_of
from dedup_pipeline.lib.search.criteria import MatchThresholds
from dedup_pipeline.lib.search.hamming_join import hamming_pairs, hamming_pairs_between, mirror_aware_pairs
from dedup_pipeline.lib.search.pair_sets import NO_PAIRS, ordered, union


def equal_key_pairs(keys: np.ndarray, new: np.ndarray | None = None) -> np.ndarray:
    """Pairs of positions with equal ``keys`` (digests), at least one of them ``new`` when given."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[starts, len(keys)])
    found = [NO_PAIRS]
    for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True):
        members = order[start : start + size]
        if new is not None and not new[members].any():
            continue
        a, b = np.triu_indices(size, k=1)
        found.append(ordered(members[a], members[b]))
    pairs = union(*found)
    if new is not None:
        pairs = pairs[new[pairs[:, 0]] | new[pairs[:, 1]]]
    return pairs


def hash_pairs(
    hashes: np.ndarray, mirrored: np.ndarray | None, threshold: int, new: np.ndarray | None = None
) -> np.ndarray:
    """Pairs within ``threshold`` bits (the smaller of the direct and the mirrored distance when
    ``mirrored`` hashes are given), at least one of them ``new`` when given."""
    if new is None:
        if mirrored is None:
            i, j, _ = hamming_pairs(hashes, threshold)
        else:
            i, j, _ = mirror_aware_pairs(hashes, mirrored, threshold)
        return ordered(i, j)
    rows = np.flatnonzero(new)
    found = []
    for left, right in [(hashes, hashes)] + ([] if mirrored is None else [(mirrored, hashes), (hashes, mirrored)]):
        query, partner, _ = hamming_pairs_between(left[rows], right, threshold)
        found.append(ordered(rows[query], partner))
    return union(*found)


def view_pairs_of(views: np.ndarray, new: np.ndarray | None = None) -> np.ndarray:
    """Pairs where a geometric view of one image is within ``VIEW_THRESHOLD`` bits of the other's
    pHash (``views`` from :func:`views.view_hashes`), at least one of them ``new`` when given."""
    if new is None:
        return view_pairs(views)
    rows = np.flatnonzero(new)
    seen = views[:, 2:]
    # a new image's views against every image's hash, and every image's views against the new hashes
    query, partner, _ = hamming_pairs_between(seen[rows].reshape(-1, 1), views[:, [IDENTITY]], VIEW_THRESHOLD)
    forward = ordered(rows[query // len(VIEWS)], partner)
    # the new hashes on the left: the multi-index join expands its left side into one-bit variants
    query, partner, _ = hamming_pairs_between(views[rows][:, [IDENTITY]], seen.reshape(-1, 1), VIEW_THRESHOLD)
    backward = ordered(rows[query], partner // len(VIEWS))
    return union(forward, backward)


def local_candidates(
    digests: Mapping[str, np.ndarray],
    hashes: Mapping[str, np.ndarray],
    embeddings: np.ndarray | None,
    views: np.ndarray | None,
    thresholds: MatchThresholds,
    new: np.ndarray | None = None,
) -> np.ndarray:
    """Every pair (positions ``i < j``, sorted) that a pair-local rule nominates: equal
    ``digests`` (content and pixel SHA-256), each thresholded hash, the cosine threshold and, when
    ``views`` are given, the geometric views. With ``new`` (a mask), only the pairs with a new
    image in them."""
    found = [equal_key_pairs(keys, new) for keys in digests.values()]
    for algorithm, limit in thresholds.hamming.items():
        found.append(hash_pairs(hashes[algorithm], thresholds.mirror_hashes(algorithm, hashes), limit, new))
    if thresholds.cosine is not None and embeddings is not None:
        if new is None:
            i, j, _ = cosine_range_join(np.asarray(embeddings), thresholds.cosine)
        else:
            i, j, _ = cosine_pairs_of(embeddings, np.flatnonzero(new), thresholds.cosine)
        found.append(ordered(i, j))
    if views is not None:
        found.append(view_pairs_of(views, new))
    return union(*found)
