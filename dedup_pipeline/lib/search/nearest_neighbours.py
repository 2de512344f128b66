"""Each sampled image's nearest neighbour among all live images: by each matching hash's Hamming
distance and by embedding cosine similarity. Their distributions are what a person checks the
thresholds against: copies pile up near distance 0 (cosine 1), distinct images far from it, and a
good threshold sits in the gap between.

A fixed-size sample keeps the cost linear in the number of images (``NEIGHBOUR_SAMPLE`` queries
against every image, exact: 1,000 queries against a million images take about 20 s here, see
``make bench``). The sample is the images with the smallest ids: ids are digests of path and
content, so it is an unbiased choice that every run makes alike, and a drop changes it only by what
it adds. A drop's join updates the previous sample: a sampled image whose nearest images are still
live is compared with the new images only (the verifier scores a pair once). Of equally near images
the one first in path order is taken, and each value is computed for its pair alone, so an update
equals a computation from scratch (for embeddings, up to float rounding where two images are
within a rounding error of each other).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from dedup_pipeline.lib.search.cosine_join import pair_similarities
from dedup_pipeline.lib.search.criteria import MatchThresholds
from dedup_pipeline.lib.search.hamming_join import mirror_aware_distances, pair_distances
from dedup_pipeline.lib.search.similar_pairs import JoinImages, JoinState, measured_pairs
from dedup_pipeline.lib.storage.stored_rows import Rows, row_blocks

NEIGHBOUR_SAMPLE = 1_000
BLOCK_CELLS = 1 << 24  # distances or products held at once
NO_NEIGHBOUR = -1
# Similarities this close are a tie (taken by path order): a matrix product and a pair's own dot
# product of the same vectors differ in the last float32 bits, and copies are often exactly alike.
SIMILARITY_TIE = 1e-5
PARTNER_SUFFIX = "_partner"  # the column of a metric's nearest image (its id)
VERIFIER_SCORE = "verifier_score"

Nearest = Callable[[np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray]]


def neighbour_sample(
    images: JoinImages,
    thresholds: MatchThresholds,
    state: JoinState,
    previous: pl.DataFrame | None = None,
    new: np.ndarray | None = None,
    size: int = NEIGHBOUR_SAMPLE,
) -> pl.DataFrame:
    """One row per sampled image: ``image_id``; for each matching hash, the Hamming distance to its
    nearest other image (``hamming_<hash>``, mirror-aware where the join matches so); ``cosine``,
    the highest embedding similarity to another image (with embeddings); each with the nearest
    image's id (``..._partner``); and, with a verifier, ``verifier_score``: its probability for the
    image and that most similar image (the nearest by the first matching hash without
    embeddings). Null where an image has no other image to compare with.

    ``previous``: the sample an earlier join under the same calibration left, and ``new`` which
    images were added since (a mask of positions): only what changed is computed again.
    """
    queries = sample_positions(images.image_ids, size)
    ids = images.image_ids
    known = _previous_rows(previous, ids[queries])
    new_positions = np.flatnonzero(new) if new is not None else None
    columns: dict[str, pl.Series] = {"image_id": pl.Series("image_id", ids[queries], pl.Int64)}
    hashes, signals = images.signals.hashes, images.signals
    metrics: list[tuple[str, Nearest, Callable[[np.ndarray, np.ndarray], np.ndarray]]] = []
    for algorithm in sorted(thresholds.hamming):
        words, mirrored = hashes[algorithm], thresholds.mirror_hashes(algorithm, hashes)
        metrics.append(
            (
                f"hamming_{algorithm}",
                lambda rows, among, w=words, m=mirrored: nearest_by_hamming(w, m, rows, among),
                lambda i, j, w=words, m=mirrored: (
                    pair_distances(w, i, j) if m is None else mirror_aware_distances(w, m, i, j)
                ),
            )
        )
    if signals.embeddings is not None:
        metrics.append(
            (
                "cosine",
                lambda rows, among: nearest_by_cosine(signals.embeddings, rows, among),
                lambda i, j: pair_similarities(signals.embeddings, i, j),
            )
        )
    partners = {}
    for name, nearest, exact in metrics:
        partner = partners[name] = _updated_nearest(name, nearest, exact, images, queries, known, new_positions)
        found = partner >= 0
        value = np.zeros(len(queries))
        value[found] = exact(queries[found], partner[found])
        columns[name] = pl.Series(name, [v if f else None for v, f in zip(value.tolist(), found, strict=True)])
        columns[name] = columns[name].cast(pl.Int64 if name.startswith("hamming_") else pl.Float32)
        partner_ids = [int(ids[p]) if p >= 0 else None for p in partner]
        columns[name + PARTNER_SUFFIX] = pl.Series(name + PARTNER_SUFFIX, partner_ids, pl.Int64)
    if thresholds.verifier is not None and partners:
        scored = "cosine" if "cosine" in partners else next(iter(partners))  # the most similar image
        reused = known if known is not None and VERIFIER_SCORE in known.columns else None
        scores = _verifier_scores(images, thresholds, state, queries, partners[scored], scored, reused)
        columns[VERIFIER_SCORE] = pl.Series(VERIFIER_SCORE, scores, pl.Float32)
    return pl.DataFrame(list(columns.values()))


def _previous_rows(previous: pl.DataFrame | None, sampled: np.ndarray) -> pl.DataFrame | None:
    """The previous sample's rows for ``sampled`` ids, in their order (nulls where not sampled before)."""
    if previous is None or previous.is_empty():
        return None
    return pl.DataFrame({"image_id": sampled}, schema={"image_id": pl.Int64}).join(
        previous, on="image_id", how="left", maintain_order="left"
    )


def _updated_nearest(
    name: str,
    nearest: Nearest,
    exact: Callable[[np.ndarray, np.ndarray], np.ndarray],
    images: JoinImages,
    queries: np.ndarray,
    known: pl.DataFrame | None,
    new_positions: np.ndarray | None,
) -> np.ndarray:
    """Each query's nearest image (position, -1 for none) by metric ``name``: from the previous
    sample's partner and the new images where that partner is still live, else against all. A new
    image replaces the partner when its own value (``exact``) is nearer, or as near and first in
    path order."""
    partner = np.full(len(queries), NO_NEIGHBOUR, dtype=np.int64)
    value = np.full(len(queries), np.nan)
    reusable = np.zeros(len(queries), dtype=bool)
    column = name + PARTNER_SUFFIX
    if known is not None and new_positions is not None and column in known.columns:
        stored = known[column].fill_null(-1).to_numpy()
        positions = images.positions(stored)
        reusable = (stored >= 0) & (positions >= 0)
        partner[reusable] = positions[reusable]
        value[reusable] = known[name].cast(pl.Float64).to_numpy()[reusable]
    full = np.flatnonzero(~reusable)
    if len(full):
        partner[full] = nearest(queries[full], None)[1]
    again = np.flatnonzero(reusable)
    if len(again) and new_positions is not None and len(new_positions):
        candidate = nearest(queries[again], new_positions)[1]
        again, candidate = again[candidate >= 0], candidate[candidate >= 0]
        found = exact(queries[again], candidate).astype(np.float64)
        if name.startswith("hamming_"):
            gain, tie = found < value[again], found == value[again]
        else:
            gain, tie = found > value[again] + SIMILARITY_TIE, np.abs(found - value[again]) <= SIMILARITY_TIE
        better = gain | (tie & (candidate < partner[again]))  # ties: the first in path order
        partner[again[better]] = candidate[better]
    return partner


def _verifier_scores(
    images: JoinImages,
    thresholds: MatchThresholds,
    state: JoinState,
    queries: np.ndarray,
    nearest: np.ndarray,
    metric: str,
    known: pl.DataFrame | None,
) -> list[float | None]:
    """The verifier's probability for each query and its ``nearest`` image by ``metric`` (null
    where there is none): kept from ``known`` where that is the pair scored before, else measured."""
    scores = np.full(len(queries), np.nan, dtype=np.float32)
    todo = nearest >= 0
    if known is not None:
        before = known[metric + PARTNER_SUFFIX].fill_null(-1).to_numpy()
        same = todo & (before == images.image_ids[np.maximum(nearest, 0)])
        scores[same] = known[VERIFIER_SCORE].cast(pl.Float32).fill_null(np.nan).to_numpy()[same]
        todo &= ~same
    pairs = np.sort(np.stack([queries[todo], nearest[todo]], axis=1), axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    if len(unique):
        measured = measured_pairs(images, thresholds, state, unique)["verification_score"]
        scores[todo] = measured.fill_null(np.nan).to_numpy()[inverse.ravel()]
    return [float(score) if found else None for score, found in zip(scores, nearest >= 0, strict=True)]


def sample_positions(image_ids: np.ndarray, size: int = NEIGHBOUR_SAMPLE) -> np.ndarray:
    """Positions of the ``size`` images with the smallest ids, in position order."""
    return np.sort(np.argsort(image_ids, kind="stable")[:size])


def nearest_by_hamming(
    hashes: np.ndarray, mirrored: np.ndarray | None, queries: np.ndarray, among: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(distance, position) of each query's nearest other image by Hamming distance of ``hashes``
    ((N, words) uint64), mirror-aware when ``mirrored`` is given, among the positions ``among``
    (increasing; None: every image); position -1 when there is none. Ties go to the first position."""
    words = np.ascontiguousarray(hashes, dtype=np.uint64)
    candidates = np.arange(len(words)) if among is None else np.asarray(among, dtype=np.int64)
    right = words if among is None else words[candidates]
    flipped = None if mirrored is None else np.ascontiguousarray(mirrored, dtype=np.uint64)
    flipped_right = None if flipped is None else flipped[candidates]
    distance = np.zeros(len(queries), dtype=np.int64)
    partner = np.full(len(queries), NO_NEIGHBOUR, dtype=np.int64)
    block = max(1, BLOCK_CELLS // max(1, len(candidates)))
    for start in range(0, len(queries), block):
        rows = queries[start : start + block]
        found = _distances(words[rows], right)
        if flipped is not None:  # as the join measures a pair: either side mirrored
            found = np.minimum.reduce([found, _distances(flipped[rows], right), _distances(words[rows], flipped_right)])
        found[rows[:, None] == candidates[None, :]] = np.iinfo(found.dtype).max  # not itself
        best = np.argmin(found, axis=1) if len(candidates) else np.zeros(len(rows), dtype=np.int64)
        if len(candidates):
            value = found[np.arange(len(rows)), best]
            distance[start : start + len(rows)] = value
            alone = value == np.iinfo(found.dtype).max
            partner[start : start + len(rows)] = np.where(alone, NO_NEIGHBOUR, candidates[best])
    return distance, partner


def _distances(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    found = np.zeros((len(left), len(right)), dtype=np.uint16)
    for word in range(left.shape[1]):
        found += np.bitwise_count(left[:, word, None] ^ right[None, :, word])
    return found


def nearest_by_cosine(
    embeddings: Rows, queries: np.ndarray, among: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(similarity, position) of each query's most similar other image by embedding cosine (unit
    rows; stored drop by drop or one array), among the positions ``among`` (None: every image);
    similarity NaN and position -1 when there is none. Of images within ``SIMILARITY_TIE`` of the
    most similar, the first in position order is taken."""
    vectors = np.asarray(embeddings[queries], dtype=np.float32)
    similarity = np.full(len(queries), -np.inf, dtype=np.float32)
    partner = np.full(len(queries), NO_NEIGHBOUR, dtype=np.int64)
    blocks = row_blocks(embeddings) if among is None else [(np.asarray(among), embeddings[among])]
    tile = max(1, BLOCK_CELLS // max(1, len(queries)))
    for positions, part in blocks:
        for start in range(0, len(part), tile):
            where = positions[start : start + tile]
            products = vectors @ np.asarray(part[start : start + tile], dtype=np.float32).T
            products[:, where < 0] = -np.inf  # rows of the drop that are not live
            products[queries[:, None] == where[None, :]] = -np.inf  # not itself
            value = products.max(axis=1)
            tied = products >= value[:, None] - SIMILARITY_TIE
            first = np.where(tied, where[None, :], np.iinfo(np.int64).max).min(axis=1)
            with np.errstate(invalid="ignore"):  # -inf against -inf: no image on either side
                close = np.abs(value - similarity) <= SIMILARITY_TIE
            better = (value > similarity + SIMILARITY_TIE) | (close & (first < partner))
            better &= value > -np.inf
            similarity[better], partner[better] = value[better], first[better]
    return np.where(partner >= 0, np.clip(similarity, -1.0, 1.0), np.nan).astype(np.float32), partner
