import numpy as np
import pytest

from dedup_pipeline.lib.search.hamming_join import (
    hamming_pairs,
    hamming_pairs_between,
    mirror_aware_pairs,
    pair_distances,
)


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


def test_rectangular_join_equals_brute_force() -> None:
    rng = np.random.default_rng(5)
    left = rng.integers(0, 2**64, size=(120, 1), dtype=np.uint64)
    right = np.concatenate([left[:40] ^ np.uint64(3), rng.integers(0, 2**64, size=(60, 1), dtype=np.uint64)])
    distance = np.bitwise_count(left[:, None, 0] ^ right[None, :, 0])
    expected = {(a, b, distance[a, b]) for a, b in zip(*np.nonzero(distance <= 20), strict=True)}
    i, j, d = hamming_pairs_between(left, right, 20, max_block_cells=500)
    assert set(zip(i.tolist(), j.tolist(), d.tolist(), strict=True)) == {tuple(map(int, e)) for e in expected}


def test_mirror_aware_pairs_match_flipped_copies() -> None:
    rng = np.random.default_rng(6)
    hashes = rng.integers(0, 2**64, size=(50, 1), dtype=np.uint64)
    mirrored = rng.integers(0, 2**64, size=(50, 1), dtype=np.uint64)
    hashes[10] = mirrored[3] ^ np.uint64(1)  # image 10 is a flipped copy of image 3
    i, j, d = mirror_aware_pairs(hashes, mirrored, 2)
    assert (3, 10, 1) in set(zip(i.tolist(), j.tolist(), d.tolist(), strict=True))
    brute = np.minimum.reduce(
        [
            np.bitwise_count(hashes[:, None, 0] ^ hashes[None, :, 0]),
            np.bitwise_count(hashes[:, None, 0] ^ mirrored[None, :, 0]),
            np.bitwise_count(mirrored[:, None, 0] ^ hashes[None, :, 0]),
        ]
    )
    expected = set(zip(*np.nonzero(np.triu(brute <= 2, k=1)), strict=True))
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == {tuple(map(int, e)) for e in expected}
