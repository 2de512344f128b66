import numpy as np
import pytest

from dedup_pipeline.lib.search import cosine_join
from dedup_pipeline.lib.search.cosine_join import (
    BOUND_DIMENSION,
    cosine_pairs,
    cosine_pairs_of,
    pair_similarities,
    projection_bound,
    pruning_bound,
)


def unit_rows(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize(("width", "bounded"), [(24, True), (24, False), (400, True)])
def test_join_equals_brute_force(width: int, bounded: bool) -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(900, width)) * np.linspace(3.0, 0.2, width)  # most variance in a few directions
    base[600:] = base[:300] + rng.normal(scale=0.3, size=(300, width))  # planted near-duplicates
    vectors = unit_rows(base)
    similarity = pair_similarities(vectors, *np.triu_indices(900, k=1))
    for threshold in (0.6, 0.9, float(np.sort(similarity)[-200])):  # the last: a pair exactly at it
        expected = np.flatnonzero(similarity >= threshold)
        i, j, s = cosine_pairs(vectors, threshold, query_block=128, bounded=bounded)
        expected_i, expected_j = (axis[expected] for axis in np.triu_indices(900, k=1))
        assert list(zip(i.tolist(), j.tolist(), strict=True)) == list(
            zip(expected_i.tolist(), expected_j.tolist(), strict=True)
        )
        assert (s == similarity[expected]).all()


def test_the_bound_is_never_below_the_product_and_prunes_most_pairs() -> None:
    rng = np.random.default_rng(5)
    vectors = unit_rows(rng.normal(size=(3000, 640)) * np.linspace(4.0, 0.1, 640))
    bound = projection_bound(vectors)
    assert bound.basis.shape == (640, BOUND_DIMENSION)
    assert np.allclose(bound.basis.T @ bound.basis, np.eye(BOUND_DIMENSION), atol=1e-5)  # orthonormal
    bounding = bound.vectors(vectors)
    products, bounds = vectors[:500] @ vectors.T, bounding[:500] @ bounding.T
    assert (bounds >= products - 1e-5).all()
    assert (bounds >= 0.8).sum() == (products >= 0.8).sum() == 500  # tight here: only each row with itself


def test_pair_similarities_and_tiny_inputs() -> None:
    vectors = unit_rows(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))
    assert np.allclose(pair_similarities(vectors, np.array([0]), np.array([2])), [0.0], atol=1e-6)
    assert len(cosine_pairs(vectors[:1], 0.5)[0]) == 0


@pytest.mark.parametrize("bounded_above", [cosine_join.BOUNDED_QUERIES_ABOVE, 0])
def test_pairs_of_some_rows_are_the_self_join_pairs_that_involve_them(
    bounded_above: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cosine_join, "BOUNDED_QUERIES_ABOVE", bounded_above)  # 0: through the bound
    rng = np.random.default_rng(1)
    vectors = unit_rows(rng.normal(size=(300, 160)) * np.linspace(3.0, 0.2, 160))
    vectors[200:260] = unit_rows(vectors[:60] + rng.normal(scale=0.05, size=(60, 160)))
    i, j, similarity = cosine_pairs(vectors, 0.8, bounded=False)
    rows = np.array([3, 7, 210, 299])
    a, b, of_rows = cosine_pairs_of(vectors, rows, 0.8)
    involved = np.isin(i, rows) | np.isin(j, rows)
    assert involved.any()
    assert np.stack([a, b], axis=1).tolist() == np.stack([i[involved], j[involved]], axis=1).tolist()
    assert np.array_equal(of_rows, similarity[involved])  # the same values, bit for bit


def test_pair_similarities_do_not_depend_on_the_other_pairs_computed_with_them() -> None:
    rng = np.random.default_rng(3)
    vectors = unit_rows(rng.normal(size=(200, 1280)))
    i, j = rng.integers(0, 200, 500), rng.integers(0, 200, 500)
    together = pair_similarities(vectors, i, j)
    alone = np.concatenate([pair_similarities(vectors, i[k : k + 1], j[k : k + 1]) for k in range(500)])
    swapped = pair_similarities(vectors, j, i)
    assert np.array_equal(together, alone) and np.array_equal(together, swapped)


def test_the_bound_of_vectors_spanning_few_directions() -> None:
    vectors = unit_rows(np.repeat(np.eye(3, 200), 4, axis=0) + 1e-3 * np.arange(12)[:, None])
    bound = projection_bound(vectors)
    assert bound.basis.shape[1] <= 4 and np.isfinite(bound.basis).all()  # three axes and the all-ones offset
    i, j, _ = cosine_pairs(vectors, 0.99, bounded=True)
    expected = cosine_pairs(vectors, 0.99, bounded=False)
    assert np.array_equal(i, expected[0]) and np.array_equal(j, expected[1])


def test_the_bound_is_used_only_where_it_prunes() -> None:
    rng = np.random.default_rng(6)
    spread = unit_rows(rng.normal(size=(3000, 400)))  # variance in every direction: a loose bound
    concentrated = unit_rows(rng.normal(size=(3000, 400)) * np.r_[np.full(20, 5.0), np.full(380, 0.05)])
    assert pruning_bound(spread, 0.1) is None
    assert pruning_bound(concentrated, 0.9) is not None
