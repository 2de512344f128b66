import numpy as np
import pytest

from dedup_pipeline.lib.hamming_join import hamming_pairs, pair_distances


def brute_force(words: np.ndarray, threshold: int) -> set[tuple[int, int, int]]:
    distance = np.bitwise_count(words[:, None, :] ^ words[None, :, :]).sum(axis=2)
    i, j = np.nonzero(np.triu(distance <= threshold, k=1))
    return {(a, b, distance[a, b]) for a, b in zip(i.tolist(), j.tolist(), strict=True)}


@pytest.mark.parametrize("word_count", [1, 4])
@pytest.mark.parametrize("threshold", [0, 3, 12])
def test_join_equals_brute_force_on_random_and_planted_data(word_count: int, threshold: int) -> None:
    rng = np.random.default_rng(threshold + word_count)
    words = rng.integers(0, 2**64, size=(700, word_count), dtype=np.uint64)
    flips = rng.integers(0, 64, size=(200, word_count)).astype(np.uint64)
    words[500:] = words[:200] ^ (np.uint64(1) << flips)  # planted near-duplicates
    words[650:660] = words[0]  # a group of exact duplicates
    expected = brute_force(words, threshold)
    i, j, d = hamming_pairs(words, threshold, max_block_cells=5_000)  # forces many blocks
    assert set(zip(i.tolist(), j.tolist(), d.tolist(), strict=True)) == expected
    assert len(i) == len(expected)
    assert (i < j).all()


def test_pair_distances() -> None:
    words = np.array([[0b1011], [0b0001], [0b1111]], dtype=np.uint64)
    assert pair_distances(words, np.array([0, 0]), np.array([1, 2])).tolist() == [2, 1]


def test_empty_and_single_inputs() -> None:
    for count in (0, 1):
        i, j, d = hamming_pairs(np.zeros((count, 1), dtype=np.uint64), 4)
        assert len(i) == len(j) == len(d) == 0
