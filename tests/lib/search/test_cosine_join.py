import numpy as np
import pytest

from dedup_pipeline.lib.search.cosine_join import (
    LookAlikeIndex,
    cosine_pairs,
    nearest_neighbour_pairs,
    pair_similarities,
)


def unit_rows(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_join_equals_brute_force(precision: str) -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(900, 24))
    base[600:] = base[:300] + rng.normal(scale=0.3, size=(300, 24))  # planted near-duplicates
    vectors = unit_rows(base)
    similarity = pair_similarities(vectors, *np.triu_indices(900, k=1))
    for threshold in (0.6, 0.9, float(np.sort(similarity)[-200])):  # the last: a pair exactly at it
        expected = np.flatnonzero(similarity >= threshold)
        i, j, s = cosine_pairs(vectors, threshold, query_block=128, precision=precision)
        expected_i, expected_j = (axis[expected] for axis in np.triu_indices(900, k=1))
        assert list(zip(i.tolist(), j.tolist(), strict=True)) == list(
            zip(expected_i.tolist(), expected_j.tolist(), strict=True)
        )
        assert (s == similarity[expected]).all()


def test_bfloat16_margin_keeps_pairs_its_rounding_puts_below_the_threshold() -> None:
    # Worst case for bfloat16: every entry is rounded down by almost half a unit in the last place,
    # so the low-precision product of this pair is about 0.004 below its float32 value.
    threshold = 0.90625  # exact in bfloat16
    entry = (1 + 0.49 * 2.0**-7) * 2.0**-4
    anchor = np.full(256, entry, dtype=np.float32)
    partner = anchor.copy()
    partner[231:] = 0.0  # float32 similarity 231 * entry**2 = 0.9093, just above the threshold
    vectors = np.stack([anchor, partner, -anchor])
    assert pair_similarities(vectors, np.array([0]), np.array([1]))[0] >= threshold
    i, j, _ = cosine_pairs(vectors, threshold, precision="bfloat16")
    assert list(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1)]


def test_pair_similarities_and_tiny_inputs() -> None:
    vectors = unit_rows(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))
    assert np.allclose(pair_similarities(vectors, np.array([0]), np.array([2])), [0.0], atol=1e-6)
    assert len(cosine_pairs(vectors[:1], 0.5)[0]) == 0


def test_nearest_neighbour_pairs_match_brute_force_and_find_planted_copies() -> None:
    rng = np.random.default_rng(1)
    small = unit_rows(rng.normal(size=(50, 8)))
    pairs = nearest_neighbour_pairs(small, neighbours=3)
    ranked = np.argsort(-(small @ small.T), axis=1)[:, 1:4]
    expected = {(min(a, b), max(a, b)) for a in range(50) for b in ranked[a].tolist()}
    assert {tuple(p) for p in pairs.tolist()} == expected
    assert (pairs[:, 0] < pairs[:, 1]).all()

    base = rng.normal(size=(400, 200))
    base[300:] = base[:100] + rng.normal(scale=0.05, size=(100, 200))  # copies of rows 0..99
    found = {tuple(p) for p in nearest_neighbour_pairs(unit_rows(base), neighbours=2).tolist()}  # PCA path
    assert all((k, 300 + k) in found for k in range(100))
    assert nearest_neighbour_pairs(small[:1], neighbours=3).shape == (0, 2)


def test_look_alike_index_ranks_queries_by_inner_product() -> None:
    rng = np.random.default_rng(0)
    dataset = rng.normal(size=(300, 5))
    queries = rng.normal(size=(7, 5))
    expected = np.argsort(-(queries @ dataset.T), axis=1)[:, :4]
    assert LookAlikeIndex(dataset).search(queries, 4).tolist() == expected.tolist()
    assert LookAlikeIndex(dataset[:2]).search(queries, 4).shape == (7, 2)


def test_look_alike_index_finds_copies_through_its_projection() -> None:
    rng = np.random.default_rng(2)
    dataset = unit_rows(rng.normal(size=(500, 300)))
    copies = unit_rows(dataset[:40] + rng.normal(scale=0.05, size=(40, 300)))
    assert (LookAlikeIndex(dataset).search(copies, 3)[:, 0] == np.arange(40)).all()
