import numpy as np
import pytest

from dedup_pipeline.lib.search.cosine_join import cosine_pairs, cosine_pairs_of, pair_similarities


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


def test_pairs_of_some_rows_are_the_self_join_pairs_that_involve_them() -> None:
    rng = np.random.default_rng(1)
    vectors = unit_rows(rng.normal(size=(300, 16)))
    vectors[200:260] = unit_rows(vectors[:60] + rng.normal(scale=0.1, size=(60, 16)))
    i, j, similarity = cosine_pairs(vectors, 0.8)
    rows = np.array([3, 7, 210, 299])
    a, b, of_rows = cosine_pairs_of(vectors, rows, 0.8)
    involved = np.isin(i, rows) | np.isin(j, rows)
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
