"""Exact cosine-similarity range self-join of unit-length embeddings, and look-alike kNN.

The range join multiplies blocks of query rows by the rows from the block on (each unordered
pair once: half the work of a full similarity matrix) and keeps only pairs above the threshold,
so no N x N matrix exists. Where the CPU multiplies bfloat16 natively (AVX512-BF16, AMX) the
products are first taken in bfloat16, about 3.5x faster than float32 here, with a margin that
bounds its rounding; every candidate is then re-scored in float32 by :func:`pair_similarities`,
so the result is exactly the float32 join.
"""

from __future__ import annotations

import faiss
import numpy as np
import torch

from dedup_pipeline.lib.runtime.cpu_features import Precision, uses_bfloat16

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
    rows = torch.from_numpy(vectors)
    if low_precision:
        rows = rows.to(torch.bfloat16)
    found_i, found_j = [], []
    with torch.inference_mode():
        for start in range(0, count, query_block):
            similarity = rows[start : start + query_block] @ rows[start:].T
            query, partner = torch.nonzero(similarity >= threshold - margin, as_tuple=True)
            keep = partner > query  # the block's own rows: each pair once
            found_i.append(query[keep].numpy() + start)
            found_j.append(partner[keep].numpy() + start)
    i, j = np.concatenate(found_i).astype(np.int64), np.concatenate(found_j).astype(np.int64)
    similarity = pair_similarities(vectors, i, j)
    keep = similarity >= threshold
    i, j, similarity = i[keep], j[keep], similarity[keep]
    order = np.lexsort((j, i))
    return i[order], j[order], similarity[order]


def pair_similarities(embeddings: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Cosine similarity of given pairs (for evidence found by another criterion), in blocks of
    pairs: gathering both rows of 500k pairs of 1280-d vectors at once would take 5 GB."""
    vectors = np.asarray(embeddings, dtype=np.float32)
    similarity = np.empty(len(i), dtype=np.float32)
    for start in range(0, len(i), PAIR_BLOCK):
        block = slice(start, start + PAIR_BLOCK)
        similarity[block] = np.einsum("nd,nd->n", vectors[i[block]], vectors[j[block]])
    return np.clip(similarity, -1.0, 1.0)


class LookAlikeIndex:
    """Exact inner-product search over a PCA projection of ``vectors`` to ``reduced_dimension``
    (fit on at most 20,000 rows, rows re-normalised): ranking look-alikes does not need every
    dimension, and the search costs a tenth. The pipeline's candidates and the verifier's training
    pairs both come from it, so training sees the candidates the pipeline will judge."""

    def __init__(self, vectors: np.ndarray, reduced_dimension: int = 64) -> None:
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        self.projection = None
        if data.shape[1] > reduced_dimension and len(data) > reduced_dimension:
            self.projection = faiss.PCAMatrix(data.shape[1], reduced_dimension)
            self.projection.train(data[:: max(1, len(data) // 20_000)])
        self.index = faiss.IndexFlatIP(reduced_dimension if self.projection is not None else data.shape[1])
        self.index.add(self._projected(data))

    def _projected(self, vectors: np.ndarray) -> np.ndarray:
        data = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.projection is None:
            return data
        data = self.projection.apply(data)
        faiss.normalize_L2(data)
        return data

    def search(self, queries: np.ndarray, count: int) -> np.ndarray:
        """(len(queries), min(count, indexed rows)) row ids, most similar first."""
        count = min(count, self.index.ntotal)
        if count < 1 or not len(queries):
            return np.zeros((len(queries), max(count, 0)), dtype=np.int64)
        return self.index.search(self._projected(queries), count)[1].astype(np.int64)


def nearest_neighbour_pairs(vectors: np.ndarray, neighbours: int) -> np.ndarray:
    """Unique pairs ``(i, j)``, ``i < j``, where either is among the other's ``neighbours`` most
    similar rows (by :class:`LookAlikeIndex`), as an (n, 2) array sorted by ``(i, j)``."""
    count = len(vectors)
    if count < 2 or neighbours < 1:
        return np.zeros((0, 2), dtype=np.int64)
    found = LookAlikeIndex(vectors).search(vectors, neighbours + 1)  # + 1: a row finds itself
    queries = np.repeat(np.arange(count), found.shape[1])
    found = found.ravel()
    keep = (found >= 0) & (found != queries)
    pairs = np.stack([np.minimum(queries, found)[keep], np.maximum(queries, found)[keep]], axis=1)
    return np.unique(pairs, axis=0)
