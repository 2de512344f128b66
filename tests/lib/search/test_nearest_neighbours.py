import numpy as np
import polars as pl

from dedup_pipeline.lib.search.criteria import EXACT_EVIDENCE, MatchThresholds
from dedup_pipeline.lib.search.nearest_neighbours import (
    nearest_by_cosine,
    nearest_by_hamming,
    neighbour_sample,
    sample_positions,
)
from dedup_pipeline.lib.search.similar_pairs import JoinImages, JoinState
from dedup_pipeline.lib.storage.stored_rows import StoredRows
from dedup_pipeline.lib.verification.pair_features import ImageSignals


def bits(a: np.ndarray, b: np.ndarray) -> int:
    return sum(bin(int(x) ^ int(y)).count("1") for x, y in zip(a, b, strict=True))


def brute_hamming(words: np.ndarray, query: int, mirrored: np.ndarray | None = None) -> int:
    sides = [words] if mirrored is None else [words, mirrored]
    return min(bits(side[query], words[other]) for side in sides for other in range(len(words)) if other != query)


def test_the_nearest_hamming_distance_is_exact_with_and_without_mirrors() -> None:
    rng = np.random.default_rng(3)
    words = rng.integers(0, 2**63, size=(300, 2), dtype=np.int64).view(np.uint64)
    words[7] = words[100]
    words[7, 0] ^= np.uint64(0b101)  # a near copy at distance 2
    mirrored = rng.integers(0, 2**63, size=(300, 2), dtype=np.int64).view(np.uint64)
    mirrored[40] = words[41]  # a mirrored copy
    queries = np.array([0, 7, 40, 100, 299])
    distance, partner = nearest_by_hamming(words, None, queries)
    assert distance.tolist() == [brute_hamming(words, query) for query in queries]
    assert distance[1] == 2 and partner[1] == 100 and partner[3] == 7
    aware, partner = nearest_by_hamming(words, mirrored, queries)
    assert aware.tolist() == [brute_hamming(words, query, mirrored) for query in queries]
    assert aware[2] == 0 and partner[2] == 41


def test_a_lone_image_has_no_neighbour() -> None:
    distance, partner = nearest_by_hamming(np.zeros((1, 1), dtype=np.uint64), None, np.array([0]))
    assert partner.tolist() == [-1]
    similarity, partner = nearest_by_cosine(np.ones((1, 4), dtype=np.float32) / 2, np.array([0]))
    assert np.isnan(similarity[0]) and partner.tolist() == [-1]


def test_the_nearest_cosine_is_exact_over_stored_parts_and_skips_rows_that_are_not_live() -> None:
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(250, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[10] = vectors[200]  # an exact copy
    # two drops' arrays; the second holds a retired row equal to image 3 that must not count
    second = np.concatenate([vectors[150:], vectors[3:4]])
    stored = StoredRows([vectors[:150], second], np.repeat([0, 1], [150, 100]), np.r_[0:150, 0:100])
    queries = np.array([3, 10, 120, 249])
    similarity, partner = nearest_by_cosine(stored, queries)
    products = vectors @ vectors[queries].T
    products[queries, np.arange(len(queries))] = -np.inf
    assert np.allclose(similarity, products.max(axis=0), atol=1e-5)
    assert partner.tolist() == products.argmax(axis=0).tolist() and partner[1] == 200


def test_the_sample_is_the_images_with_the_smallest_ids_in_position_order() -> None:
    assert sample_positions(np.array([50, 3, 40, 7, 9]), 3).tolist() == [1, 3, 4]
    assert sample_positions(np.array([5, 1]), 10).tolist() == [0, 1]


def test_a_neighbour_sample_has_a_column_per_matching_hash_and_the_cosine() -> None:
    count = 40
    rng = np.random.default_rng(8)
    phash = rng.integers(0, 2**63, size=(count, 1), dtype=np.int64).view(np.uint64)
    phash[1] = phash[0]
    embeddings = rng.normal(size=(count, 8)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    images = JoinImages(
        np.arange(100, 100 + count, dtype=np.int64),
        {name: np.arange(count).astype(str) for name in EXACT_EVIDENCE},
        ImageSignals(None, {"phash": phash, "dhash": phash}, embeddings),
    )
    thresholds = MatchThresholds(hamming={"phash": 4}, cosine=0.9)
    sample = neighbour_sample(images, thresholds, JoinState.empty(), size=5)
    assert sample.columns == ["image_id", "hamming_phash", "cosine"]
    assert sample["image_id"].to_list() == [100, 101, 102, 103, 104]
    assert sample["hamming_phash"][:2].to_list() == [0, 0]
    assert sample.schema["cosine"] == pl.Float32 and sample["cosine"].null_count() == 0
