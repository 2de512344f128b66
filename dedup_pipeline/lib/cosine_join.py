"""Exact cosine-similarity range self-join of unit-length embeddings.

faiss's exact inner-product range search (``IndexFlatIP.range_search``) over query blocks: only
pairs above the threshold are materialised, never the N x N similarity matrix.
"""

from __future__ import annotations

import faiss
import numpy as np

DEFAULT_QUERY_BLOCK = 4096


def cosine_pairs(
    embeddings: np.ndarray, threshold: float, query_block: int = DEFAULT_QUERY_BLOCK
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` with cosine similarity >= ``threshold`` (rows must be unit length)."""
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    count = vectors.shape[0]
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
    if count < 2:
        return empty
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    found_i, found_j, found_s = [], [], []
    # faiss keeps results strictly above the radius; widen slightly and filter exactly below.
    radius = float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))
    for start in range(0, count, query_block):
        stop = min(count, start + query_block)
        limits, similarity, neighbours = index.range_search(vectors[start:stop], radius)
        queries = np.repeat(np.arange(start, stop), np.diff(limits).astype(np.int64))
        keep = (neighbours > queries) & (similarity >= threshold)
        found_i.append(queries[keep])
        found_j.append(neighbours[keep])
        found_s.append(similarity[keep])
    i, j, s = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_s)
    order = np.lexsort((j, i))
    return i[order].astype(np.int64), j[order].astype(np.int64), np.clip(s[order], -1.0, 1.0)


def pair_similarities(embeddings: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Cosine similarity of given pairs (for evidence found by another criterion)."""
    vectors = np.asarray(embeddings, dtype=np.float32)
    return np.clip(np.einsum("nd,nd->n", vectors[i], vectors[j]), -1.0, 1.0)


def nearest_neighbour_pairs(vectors: np.ndarray, neighbours: int, reduced_dimension: int = 64) -> np.ndarray:
    """Unique pairs ``(i, j)``, ``i < j``, where either is among the other's ``neighbours`` most
    similar rows (inner product), as an (n, 2) array sorted by ``(i, j)``.

    Exact search over a PCA projection to ``reduced_dimension`` (fit on at most 20,000 rows):
    ranking look-alikes does not need every dimension, and the search costs a tenth.
    """
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    count = data.shape[0]
    if count < 2 or neighbours < 1:
        return np.zeros((0, 2), dtype=np.int64)
    if data.shape[1] > reduced_dimension and count > reduced_dimension:
        projection = faiss.PCAMatrix(data.shape[1], reduced_dimension)
        projection.train(data[:: max(1, count // 20_000)])
        data = projection.apply(data)
        faiss.normalize_L2(data)
    index = faiss.IndexFlatIP(data.shape[1])
    index.add(data)
    k = min(count, neighbours + 1)  # + 1: a row finds itself
    _, found = index.search(data, k)
    queries = np.repeat(np.arange(count), k)
    found = found.ravel()
    keep = (found >= 0) & (found != queries)
    pairs = np.stack([np.minimum(queries, found)[keep], np.maximum(queries, found)[keep]], axis=1)
    return np.unique(pairs.astype(np.int64), axis=0)
