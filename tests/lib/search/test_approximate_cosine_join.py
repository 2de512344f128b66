import numpy as np

from dedup_pipeline.lib.search.approximate_cosine_join import (
    approximate_cosine_pairs,
    assign_cells,
    cell_count,
    cosine_range_join,
)
from dedup_pipeline.lib.search.cosine_join import cosine_pairs


def clustered_with_copies(count: int, dimension: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((12, dimension))
    vectors = centres[rng.integers(0, 12, count)] + rng.standard_normal((count, dimension))
    copies = rng.choice(count, count // 10, replace=False)
    vectors[copies] = vectors[(copies + 1) % count] + 0.15 * rng.standard_normal((len(copies), dimension))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_found_pairs_are_exact_pairs_with_exact_similarities() -> None:
    vectors = clustered_with_copies(3_000)
    exact_i, exact_j, exact_s = cosine_pairs(vectors, 0.9)
    i, j, similarity = approximate_cosine_pairs(vectors, 0.9, probes=2)
    exact = dict(zip(zip(exact_i.tolist(), exact_j.tolist(), strict=True), exact_s.tolist(), strict=True))
    assert (i < j).all() and np.all(np.diff(i * len(vectors) + j) > 0)  # sorted, each pair once
    found = zip(zip(i.tolist(), j.tolist(), strict=True), similarity.tolist(), strict=True)
    assert all(exact[pair] == s for pair, s in found)
    assert len(i) >= 0.95 * len(exact_i)  # near-duplicates share a cell


def test_more_probes_find_more_and_one_cell_is_the_exact_join() -> None:
    vectors = clustered_with_copies(2_000, seed=1)
    one, three = (len(approximate_cosine_pairs(vectors, 0.8, probes=p)[0]) for p in (1, 3))
    assert one <= three <= len(cosine_pairs(vectors, 0.8)[0])
    whole = approximate_cosine_pairs(vectors, 0.8, cells=1)
    assert all(np.array_equal(a, b) for a, b in zip(whole, cosine_pairs(vectors, 0.8), strict=True))


def test_cells_are_the_nearest_centroids() -> None:
    vectors = clustered_with_copies(1_000, seed=2)
    nearest = assign_cells(vectors, cell_count(len(vectors)), probes=2)
    assert nearest.shape == (1_000, 2) and cell_count(1_000) == 31
    assert (nearest[:, 0] != nearest[:, 1]).all() and nearest.min() >= 0 and nearest.max() < 31


def test_the_range_join_is_exact_up_to_its_limit() -> None:
    vectors = clustered_with_copies(1_500, seed=3)
    exact = cosine_pairs(vectors, 0.85)
    assert all(np.array_equal(a, b) for a, b in zip(cosine_range_join(vectors, 0.85), exact, strict=True))
    approximate = approximate_cosine_pairs(vectors, 0.85)
    above_limit = cosine_range_join(vectors, 0.85, exact_limit=1_000)
    assert all(np.array_equal(a, b) for a, b in zip(above_limit, approximate, strict=True))
