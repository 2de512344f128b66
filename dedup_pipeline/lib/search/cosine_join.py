"""Exact cosine-similarity range joins of unit-length embeddings: a self-join, and some rows against all.

The range join multiplies blocks of query rows by the rows from the block on (each unordered
pair once: half the work of a full similarity matrix) and keeps only pairs above the threshold,
so no N x N matrix exists. Where the CPU multiplies bfloat16 natively (AVX512-BF16, AMX) the
products are first taken in bfloat16, about 3.5x faster than float32 here, with a margin that
bounds its rounding; every candidate is then re-scored in float32 by :func:`pair_similarities`,
so the result is exactly the float32 join.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dedup_pipeline.lib.runtime.cpu_features import Precision, uses_bfloat16
from dedup_pipeline.lib.storage.stored_rows import Rows, StoredRows, row_blocks

DEFAULT_QUERY_BLOCK = 2048
PAIR_BLOCK = 16_384
# bfloat16 keeps 8 significant bits: rounding both inputs moves a dot product of unit vectors by
# at most 2**-8, rounding the result by at most 2**-8 more; the margin doubles that.
BFLOAT16_MARGIN = 2.0**-6
FLOAT32_MARGIN = 1e-4


def cosine_pairs(
    embeddings: np.ndarray, threshold: float, query_block: int = DEFAULT_QUERY_BLOCK, precision: Precision = "auto"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` with cosine similarity >= ``threshold`` (rows must be unit length),
    sorted by ``(i, j)``, with their float32 similarity."""
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    count = vectors.shape[0]
    if count < 2:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    low_precision = uses_bfloat16(precision)
    scale = float(np.max(np.einsum("nd,nd->n", vectors, vectors)))  # squared norm: 1 for unit rows
    margin = (BFLOAT16_MARGIN if low_precision else FLOAT32_MARGIN) * max(scale, 1.0)
    close = (_bfloat16_close if low_precision else _float32_close)(vectors, threshold - margin)
    found_i, found_j = [], []
    for start in range(0, count, query_block):
        query, partner = np.nonzero(close(start, start + query_block))
        keep = partner > query  # the block's own rows: each pair once
        found_i.append(query[keep] + start)
        found_j.append(partner[keep] + start)
    i, j = np.concatenate(found_i).astype(np.int64), np.concatenate(found_j).astype(np.int64)
    similarity = pair_similarities(vectors, i, j)
    keep = similarity >= threshold
    i, j, similarity = i[keep], j[keep], similarity[keep]
    order = np.lexsort((j, i))
    return i[order], j[order], similarity[order]


def _float32_close(vectors: np.ndarray, floor: float) -> Callable[[int, int], np.ndarray]:
    """Whether the product of each row ``start:stop`` with each row from ``start`` on is >= ``floor``
    (numpy's BLAS: as fast as torch's float32 matmul here, without torch's 1.5 s import)."""
    return lambda start, stop: vectors[start:stop] @ vectors[start:].T >= floor


def _bfloat16_close(vectors: np.ndarray, floor: float) -> Callable[[int, int], np.ndarray]:
    """:func:`_float32_close` with the products taken in bfloat16."""
    import torch

    rows = torch.from_numpy(vectors).to(torch.bfloat16)

    def close(start: int, stop: int) -> np.ndarray:
        with torch.inference_mode():
            return (rows[start:stop] @ rows[start:].T >= floor).numpy()

    return close


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
    :func:`cosine_pairs` that involve ``rows``, found with ``len(rows) / N`` of its work. Rescored
    by :func:`pair_similarities` as it is, so a pair is in both or in neither."""
    rows = np.asarray(rows, dtype=np.int64)
    found_i, found_j = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for start in range(0, len(rows), query_block):
        queries = rows[start : start + query_block]
        query_vectors = np.asarray(embeddings[queries], dtype=np.float32)
        for positions, block in row_blocks(embeddings):  # each drop's array as it was read
            query, partner = np.nonzero(query_vectors @ block.T >= threshold - FLOAT32_MARGIN)
            partner = positions[partner]
            found_i.append(queries[query][partner >= 0])
            found_j.append(partner[partner >= 0])
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    keep = i != j
    pairs = np.unique(np.stack([np.minimum(i, j)[keep], np.maximum(i, j)[keep]], axis=1).reshape(-1, 2), axis=0)
    similarity = pair_similarities(embeddings, pairs[:, 0], pairs[:, 1])
    close = similarity >= threshold
    return pairs[close, 0], pairs[close, 1], similarity[close]
