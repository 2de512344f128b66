"""Exact cosine-similarity range joins of embeddings: a self-join, and some rows against all.

The range join multiplies blocks of query rows by the rows from the block on (each unordered
pair once: half the work of a full similarity matrix) and keeps only pairs above the threshold,
so no N x N matrix exists.

The products are not taken on the embeddings themselves but on short vectors that bound them
(:class:`ProjectionBound`): split each embedding into its projection ``p`` on a subspace of
``BOUND_DIMENSION`` directions and the rest ``r``; then ``a . b = p_a . p_b + r_a . r_b`` and, by
Cauchy-Schwarz, ``r_a . r_b <= |r_a| |r_b|``. So ``p_a . p_b + |r_a| |r_b|``, one product of
(dimension + 1)-vectors ``[p, |r|]``, is never below ``a . b``: a pair below the threshold there
(less a margin for rounding) cannot be above it, and every other pair is re-scored on the full
embeddings by :func:`pair_similarities`. The result is exactly the join on the full vectors,
whatever the subspace; a subspace that holds most of the embeddings' variance (the principal
directions of a sample) only makes the bound tight. On CIFAR-10's embeddings (1,280-d) and 128
directions, 8,827 of the 35.3 million pairs of 594 images against 59,400 passed the bound at 0.862
(617 true pairs): a tenth of the multiply work, and few pairs to re-score. The self-join of the
59,400 took 6.6 s, against 31 s on the full embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dedup_pipeline.lib.runtime.allocator import keep_freed_memory_for_reuse
from dedup_pipeline.lib.storage.stored_rows import Rows, StoredRows, row_blocks

DEFAULT_QUERY_BLOCK = 2048
PARTNER_TILE = 4096  # 2,048 x 4,096 float32 products: 32 MB
PAIR_BLOCK = 16_384
BOUND_DIMENSION = 128
BASIS_SAMPLE = 2_048  # rows the principal directions are estimated from
# Where the bound pays for its basis and projections (0.06 s and a 128-column product per row): a
# self-join of more rows than BOUNDED_ROWS_ABOVE, and a join of more queries than
# BOUNDED_QUERIES_ABOVE against all rows (594 queries against 60,000: 1.07 s bounded, 0.53 s not).
BOUNDED_ROWS_ABOVE = 4_096
BOUNDED_QUERIES_ABOVE = 2_048
# Rounding of the bound, for rows of norm <= 1: the float32 products over BOUND_DIMENSION + 1 terms
# err by under 1e-5, and |r| = sqrt(|a|^2 - |p|^2) of a nearly fully projected row by up to
# sqrt(1e-5) = 3.2e-3 when |p|^2 errs by 1e-5, so |r_a| |r_b| by under 7e-3; pair_similarities,
# which decides, errs by under 1e-4. The margin covers all of them.
BOUND_MARGIN = 1e-2
# The bound is used where at most this share of a sample's pairs pass it (CIFAR-10: 0.025%).
MAX_BOUND_PASS_RATE = 1e-3
BOUND_SAMPLE_ROWS, BOUND_SAMPLE_PARTNERS = 256, 4096


@dataclass(frozen=True)
class ProjectionBound:
    """Orthonormal directions (dimension, BOUND_DIMENSION) and the bounding vectors they give."""

    basis: np.ndarray

    def vectors(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, BOUND_DIMENSION + 1) float32: each row's projection, then the norm of its rest."""
        rows = np.asarray(embeddings, dtype=np.float32)
        projected = rows @ self.basis
        rest = np.einsum("nd,nd->n", rows, rows, dtype=np.float64) - np.einsum(
            "nk,nk->n", projected, projected, dtype=np.float64
        )
        return np.concatenate([projected, np.sqrt(np.maximum(rest, 0.0)).astype(np.float32)[:, None]], axis=1)


def projection_bound(embeddings: Rows, dimension: int = BOUND_DIMENSION, seed: int = 0) -> ProjectionBound:
    """The bound for these embeddings: their principal directions, estimated from an even sample of
    at most BASIS_SAMPLE rows by a randomised range finder with two power iterations (an
    approximate subspace only loosens the bound). Columns are made orthonormal through the
    eigenvectors of their small Gram matrix: LAPACK's QR of a 1,280 x 144 matrix took 0.4-2.3 s
    here, this 0.12 s for the whole basis."""
    count, width = embeddings.shape
    sample = np.asarray(embeddings[np.arange(0, count, max(1, count // BASIS_SAMPLE))], dtype=np.float32)
    columns = np.random.default_rng(seed).standard_normal((width, min(width, dimension + 16)), dtype=np.float32)
    strength = np.zeros(0)
    for _ in range(3):
        if columns.shape[1] == 0:
            break
        columns, strength = _orthonormal(sample.T @ (sample @ columns))
    strongest = np.argsort(strength)[::-1][:dimension]
    return ProjectionBound(np.ascontiguousarray(columns[:, strongest]))


def pruning_bound(embeddings: Rows, threshold: float) -> ProjectionBound | None:
    """The bound for these embeddings if it prunes: if at most MAX_BOUND_PASS_RATE of the pairs
    of a sample (even rows against odd rows) pass it, else None (multiply the full embeddings).
    Embeddings whose variance is spread over many directions are bounded loosely: on synthetic
    clusters with isotropic noise, the bounded exact join of 100,000 took 166 s and 4.5 GB,
    against 86 s and 2.3 GB on the full embeddings. On CIFAR-10's, 0.025% of pairs pass."""
    bound = projection_bound(embeddings)
    count = embeddings.shape[0]
    rows = np.arange(0, count, 2)[:: max(1, count // (2 * BOUND_SAMPLE_ROWS))][:BOUND_SAMPLE_ROWS]
    partners = np.arange(1, count, 2)[:: max(1, count // (2 * BOUND_SAMPLE_PARTNERS))][:BOUND_SAMPLE_PARTNERS]
    if not len(rows) or not len(partners):
        return bound
    passed = bound.vectors(embeddings[rows]) @ bound.vectors(embeddings[partners]).T >= threshold - BOUND_MARGIN
    return bound if passed.mean() <= MAX_BOUND_PASS_RATE else None


def _orthonormal(columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An orthonormal basis of the span of ``columns`` (float32, orthonormal in float64 first), and
    the weight of each basis vector in it (its Gram eigenvalue); directions the columns do not
    span (rank-deficient samples) are left out."""
    wide = columns.astype(np.float64)
    weights, vectors = np.linalg.eigh(wide.T @ wide)
    spanned = weights > weights.max(initial=0.0) * 1e-10
    weights, vectors = weights[spanned], vectors[:, spanned]
    return (wide @ (vectors / np.sqrt(weights))).astype(np.float32), weights


def cosine_pairs(
    embeddings: np.ndarray, threshold: float, query_block: int = DEFAULT_QUERY_BLOCK, bounded: bool | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` with cosine similarity >= ``threshold`` (rows must be unit length),
    sorted by ``(i, j)``, with their float32 similarity. ``bounded`` multiplies the bounding
    vectors, else the full embeddings: the same pairs (None: the bounding vectors above
    BOUNDED_ROWS_ABOVE rows where they prune, see :func:`pruning_bound`)."""
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    count = vectors.shape[0]
    if count < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    if bounded is None:
        bound = pruning_bound(vectors, threshold) if count > BOUNDED_ROWS_ABOVE else None
    else:
        bound = projection_bound(vectors) if bounded else None
    compared = _compared(bound, vectors)
    floor = threshold - BOUND_MARGIN
    found_i, found_j = [], []
    for start in range(0, count, query_block):
        query, partner = _close(compared[start : start + query_block], compared[start:], floor)
        keep = partner > query  # the block's own rows: each pair once
        found_i.append(query[keep] + start)
        found_j.append(partner[keep] + start)
    i, j = np.concatenate(found_i).astype(np.int64), np.concatenate(found_j).astype(np.int64)
    similarity = pair_similarities(vectors, i, j)
    keep = similarity >= threshold
    i, j, similarity = i[keep], j[keep], similarity[keep]
    order = np.lexsort((j, i))
    return i[order], j[order], similarity[order]


def pair_similarities(embeddings: Rows, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Cosine similarity of given pairs (for evidence found by another criterion), in blocks of
    pairs: gathering both rows of 500k pairs of 1280-d vectors at once would take 5 GB.
    ``embeddings`` may be :class:`StoredRows`: only the rows of the pairs are gathered."""
    vectors = embeddings if isinstance(embeddings, StoredRows) else np.asarray(embeddings, dtype=np.float32)
    similarity = np.empty(len(i), dtype=np.float32)
    for start in range(0, len(i), PAIR_BLOCK):
        block = slice(start, start + PAIR_BLOCK)
        similarity[block] = np.einsum("nd,nd->n", vectors[i[block]], vectors[j[block]])
    return np.clip(similarity, -1.0, 1.0)


def cosine_pairs_of(
    embeddings: Rows, rows: np.ndarray, threshold: float, query_block: int = DEFAULT_QUERY_BLOCK
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(i, j)``, ``i < j``, with cosine similarity >= ``threshold`` where ``i`` or ``j`` is
    one of ``rows`` (new images against every image), sorted, with their similarity: the pairs of
    :func:`cosine_pairs` that involve ``rows``, found with about ``len(rows) / N`` of its work.
    Rescored by :func:`pair_similarities` as it is, so a pair is in both or in neither."""
    rows = np.asarray(rows, dtype=np.int64)
    found_i, found_j = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    if len(rows):
        # the bound costs a projection of every row, worth it for many queries only
        bound = pruning_bound(embeddings, threshold) if len(rows) > BOUNDED_QUERIES_ABOVE else None
        queries = _compared(bound, embeddings[rows])
        for positions, block in row_blocks(embeddings):  # each drop's array as it was read
            partners = _compared(bound, block)
            for start in range(0, len(rows), query_block):
                query, partner = _close(queries[start : start + query_block], partners, threshold - BOUND_MARGIN)
                partner = positions[partner]
                found_i.append(rows[start + query][partner >= 0])
                found_j.append(partner[partner >= 0])
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    keep = i != j
    pairs = np.unique(np.stack([np.minimum(i, j)[keep], np.maximum(i, j)[keep]], axis=1).reshape(-1, 2), axis=0)
    similarity = pair_similarities(embeddings, pairs[:, 0], pairs[:, 1])
    close = similarity >= threshold
    return pairs[close, 0], pairs[close, 1], similarity[close]


def _close(queries: np.ndarray, partners: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """(query, partner) positions whose product is >= ``floor``, a tile of partners at a time: the
    tiles' memory is reused (:func:`keep_freed_memory_for_reuse`), where one product of all
    partners would be fresh memory, and a fresh page traps to the host here (594 x 60,000
    products of 129-d vectors: 0.33-0.50 s, most of it page faults)."""
    keep_freed_memory_for_reuse()
    found_query, found_partner = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for start in range(0, len(partners), PARTNER_TILE):
        close = queries @ partners[start : start + PARTNER_TILE].T >= floor
        rows = np.flatnonzero(close.any(axis=1))  # few rows have a partner: 2x faster than nonzero of all
        query, partner = np.nonzero(close[rows])
        found_query.append(rows[query])
        found_partner.append(partner + start)
    return np.concatenate(found_query), np.concatenate(found_partner)


def _compared(bound: ProjectionBound | None, vectors: np.ndarray) -> np.ndarray:
    """What the join multiplies: the bounding vectors, or the embeddings themselves."""
    return bound.vectors(vectors) if bound is not None else np.asarray(vectors, dtype=np.float32)
