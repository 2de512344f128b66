"""Each sampled image's nearest neighbour among all live images: by each matching hash's Hamming
distance and by embedding cosine similarity. Their distributions are what a person checks the
thresholds against: copies pile up near distance 0 (cosine 1), distinct images far from it, and a
good threshold sits in the gap between.

A fixed-size sample keeps the cost linear in the number of images (``NEIGHBOUR_SAMPLE`` queries
against every image, exact; 1,000 queries against 60,000 CIFAR-10 embeddings take about a second).
The sample is the images with the smallest ids: ids are digests of path and content, so it is an
unbiased choice that every run makes alike, and a drop changes it only by what it adds.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from dedup_pipeline.lib.search.criteria import MatchThresholds
from dedup_pipeline.lib.search.similar_pairs import JoinImages, JoinState, measured_pairs
from dedup_pipeline.lib.storage.stored_rows import Rows, row_blocks

NEIGHBOUR_SAMPLE = 1_000
BLOCK_CELLS = 1 << 24  # distances or products held at once
NO_NEIGHBOUR = -1


def neighbour_sample(
    images: JoinImages, thresholds: MatchThresholds, state: JoinState, size: int = NEIGHBOUR_SAMPLE
) -> pl.DataFrame:
    """One row per sampled image: ``image_id``; for each matching hash, the Hamming distance to
    its nearest other image (``hamming_<hash>``, mirror-aware where the join matches so);
    ``cosine``, the highest embedding similarity to another image (with embeddings); and, with a
    verifier, ``verifier_score``: its probability for the image and that most similar image (the
    nearest by the first matching hash without embeddings), NaN where the join's screen would
    not align the pair. Null where an image has no other image to compare with."""
    queries = sample_positions(images.image_ids, size)
    columns: dict[str, pl.Series] = {"image_id": pl.Series("image_id", images.image_ids[queries], pl.Int64)}
    hashes, nearest = images.signals.hashes, None
    for algorithm in sorted(thresholds.hamming):
        distance, partner = nearest_by_hamming(hashes[algorithm], thresholds.mirror_hashes(algorithm, hashes), queries)
        found = [int(value) if other >= 0 else None for value, other in zip(distance, partner, strict=True)]
        columns[algorithm] = pl.Series(f"hamming_{algorithm}", found, pl.Int64)
        nearest = partner if nearest is None else nearest
    if images.signals.embeddings is not None:
        similarity, nearest = nearest_by_cosine(images.signals.embeddings, queries)
        columns["cosine"] = pl.Series("cosine", similarity, pl.Float32).fill_nan(None)
    if thresholds.verifier is not None and nearest is not None:
        columns["verifier_score"] = pl.Series(
            "verifier_score", _verifier_scores(images, thresholds, state, queries, nearest), pl.Float32
        )
    return pl.DataFrame(list(columns.values()))


def _verifier_scores(
    images: JoinImages, thresholds: MatchThresholds, state: JoinState, queries: np.ndarray, nearest: np.ndarray
) -> list[float | None]:
    """The verifier's probability for each query and its ``nearest`` (null where there is none)."""
    found = nearest >= 0
    pairs = np.sort(np.stack([queries[found], nearest[found]], axis=1), axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    scores = np.full(len(queries), np.nan, dtype=np.float32)
    if len(unique):
        measured = measured_pairs(images, thresholds, state, unique)["verification_score"]
        scores[found] = measured.fill_null(np.nan).to_numpy()[inverse.ravel()]
    return [float(score) if other else None for score, other in zip(scores, found, strict=True)]


def sample_positions(image_ids: np.ndarray, size: int = NEIGHBOUR_SAMPLE) -> np.ndarray:
    """Positions of the ``size`` images with the smallest ids, in position order."""
    return np.sort(np.argsort(image_ids, kind="stable")[:size])


def nearest_by_hamming(
    hashes: np.ndarray, mirrored: np.ndarray | None, queries: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(distance, position) of each query's nearest other image by Hamming distance of ``hashes``
    ((N, words) uint64), mirror-aware when ``mirrored`` is given; position -1 when alone."""
    words = np.ascontiguousarray(hashes, dtype=np.uint64)
    count = len(words)
    distance = np.zeros(len(queries), dtype=np.int64)
    partner = np.full(len(queries), NO_NEIGHBOUR, dtype=np.int64)
    block = max(1, BLOCK_CELLS // max(1, count))
    for start in range(0, len(queries), block):
        rows = queries[start : start + block]
        found = _distances(words[rows], words)
        if mirrored is not None:
            found = np.minimum(found, _distances(np.ascontiguousarray(mirrored, dtype=np.uint64)[rows], words))
        found[np.arange(len(rows)), rows] = np.iinfo(found.dtype).max  # not itself
        best = np.argmin(found, axis=1)
        distance[start : start + len(rows)] = found[np.arange(len(rows)), best]
        partner[start : start + len(rows)] = np.where(count > 1, best, NO_NEIGHBOUR)
    return distance, partner


def _distances(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    found = np.zeros((len(left), len(right)), dtype=np.uint16)
    for word in range(left.shape[1]):
        found += np.bitwise_count(left[:, word, None] ^ right[None, :, word])
    return found


def nearest_by_cosine(embeddings: Rows, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(similarity, position) of each query's most similar other image by embedding cosine (unit
    rows; stored drop by drop or one array); similarity NaN and position -1 when alone."""
    vectors = np.asarray(embeddings[queries], dtype=np.float32)
    similarity = np.full(len(queries), -np.inf, dtype=np.float32)
    partner = np.full(len(queries), NO_NEIGHBOUR, dtype=np.int64)
    tile = max(1, BLOCK_CELLS // max(1, len(queries)))
    for positions, part in row_blocks(embeddings):
        for start in range(0, len(part), tile):
            where = positions[start : start + tile]
            products = vectors @ np.asarray(part[start : start + tile], dtype=np.float32).T
            products[:, where < 0] = -np.inf  # rows of the drop that are not live
            products[queries[:, None] == where[None, :]] = -np.inf  # not itself
            best = np.argmax(products, axis=1)
            value = products[np.arange(len(queries)), best]
            better = value > similarity
            similarity[better], partner[better] = value[better], where[best[better]]
    return np.where(partner >= 0, np.clip(similarity, -1.0, 1.0), np.nan).astype(np.float32), partner
