"""Approximate cosine range self-join for millions of embeddings: exact joins inside k-means cells.

The exact join (:mod:`cosine_join`) multiplies every pair once, O(N^2): about 9 s at 60,000 vectors
here but hours at a few million. Near-duplicates are very close, so they almost always share one
of their nearest k-means centroids. Here faiss's spherical k-means cuts the vectors into about
``sqrt(N)`` cells, each vector joins the cells of its ``probes`` nearest centroids, and the exact
blockwise join runs inside each cell: the cost falls to about ``N**1.5 * probes**2`` products.

Similarities are exact (float32 re-scored), so nothing above the threshold is invented; a pair
is missed only when the two vectors share none of their cells. ``make bench`` measures that
recall against the exact join on sampled queries.
"""

from __future__ import annotations

import faiss
import numpy as np

from dedup_pipeline.lib.search.cosine_join import cosine_pairs

TRAINING_POINTS_PER_CELL = 64
KMEANS_ITERATIONS = 12


def cell_count(count: int) -> int:
    """About sqrt(N) cells (each cell's join then costs about what the assignment does)."""
    return max(1, int(np.sqrt(count)))


def assign_cells(vectors: np.ndarray, cells: int, probes: int, seed: int = 0) -> np.ndarray:
    """(N, probes) ids of each vector's nearest k-means centroids (spherical k-means by faiss,
    trained on a sample of ``TRAINING_POINTS_PER_CELL`` vectors per cell)."""
    rng = np.random.default_rng(seed)
    sample_size = min(len(vectors), cells * TRAINING_POINTS_PER_CELL)
    sample = vectors[np.sort(rng.choice(len(vectors), size=sample_size, replace=False))]
    kmeans = faiss.Kmeans(
        vectors.shape[1], cells, niter=KMEANS_ITERATIONS, spherical=True, seed=seed, max_points_per_centroid=10**9
    )
    kmeans.train(sample)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(kmeans.centroids)
    _, nearest = index.search(vectors, probes)
    return nearest


def approximate_cosine_pairs(
    embeddings: np.ndarray, threshold: float, probes: int = 2, cells: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``i < j`` with cosine similarity >= ``threshold`` found within shared cells (rows must be
    unit length), sorted by ``(i, j)``, with their float32 similarity."""
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    count = len(vectors)
    cells = cells or cell_count(count)
    if count < 2 or cells <= 1:
        return cosine_pairs(vectors, threshold)
    nearest = assign_cells(vectors, cells, min(probes, cells))
    members = np.repeat(np.arange(count), nearest.shape[1])
    cell_of = nearest.ravel()
    order = np.argsort(cell_of, kind="stable")
    members, bounds = members[order], np.searchsorted(cell_of[order], np.arange(cells + 1))
    found_i, found_j, found_s = [], [], []
    for cell in range(cells):
        ids = members[bounds[cell] : bounds[cell + 1]]
        if len(ids) < 2:
            continue
        i, j, similarity = cosine_pairs(vectors[ids], threshold)
        found_i.append(ids[i])
        found_j.append(ids[j])
        found_s.append(similarity)
    if not found_i:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    i, j, similarity = np.concatenate(found_i), np.concatenate(found_j), np.concatenate(found_s)
    # ids within a cell are increasing, so i < j holds; a pair sharing several cells is kept once
    keys, first = np.unique(i * count + j, return_index=True)
    return keys // count, keys % count, similarity[first]


EXACT_JOIN_LIMIT = 250_000  # the exact join takes about 2 minutes here at this size, and grows as N^2


def cosine_range_join(
    embeddings: np.ndarray, threshold: float, exact_limit: int = EXACT_JOIN_LIMIT
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The exact join up to ``exact_limit`` vectors, the approximate one above it."""
    if len(embeddings) <= exact_limit:
        return cosine_pairs(embeddings, threshold)
    return approximate_cosine_pairs(embeddings, threshold)
