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
    sides = [(words, words)] if mirrored is None else [(words, words), (mirrored, words), (words, mirrored)]
    return min(
        bits(left[query], right[other]) for left, right in sides for other in range(len(words)) if other != query
    )


def test_the_nearest_hamming_distance_is_exact_with_and_without_mirrors() -> None:
    rng = np.random.default_rng(3)
    words = rng.integers(0, 2**63, size=(300, 2), dtype=np.int64).view(np.uint64)
    words[7] = words[100]
    words[7, 0] ^= np.uint64(0b101)  # a near copy at distance 2
    mirrored = rng.integers(0, 2**63, size=(300, 2), dtype=np.int64).view(np.uint64)
    mirrored[40] = words[41]  # a mirrored copy
    mirrored[200] = words[199]
    queries = np.array([0, 7, 40, 100, 199, 299])
    distance, partner = nearest_by_hamming(words, None, queries)
    assert distance.tolist() == [brute_hamming(words, query) for query in queries]
    assert distance[1] == 2 and partner[1] == 100 and partner[3] == 7
    aware, partner = nearest_by_hamming(words, mirrored, queries)
    assert aware.tolist() == [brute_hamming(words, query, mirrored) for query in queries]
    assert aware[2] == 0 and partner[2] == 41
    assert aware[4] == 0 and partner[4] == 200  # the other image's mirror is the copy


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


def join_images(ids: np.ndarray, phash: np.ndarray, embeddings: np.ndarray) -> JoinImages:
    return JoinImages(
        ids.astype(np.int64),
        {name: ids.astype(str) for name in EXACT_EVIDENCE},
        ImageSignals(None, {"phash": phash, "dhash": phash}, embeddings),
    )


def universe(count: int, seed: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ids, 64-bit hashes with planted near copies, unit embeddings with planted near copies."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(1_000, 1_000 + count))
    phash = rng.integers(0, 2**63, size=(count, 1), dtype=np.int64).view(np.uint64)
    embeddings = rng.normal(size=(count, 8)).astype(np.float32)
    for copy in range(1, count, 4):  # every fourth image is a near copy of the one before
        phash[copy] = phash[copy - 1] ^ np.uint64(1 << int(rng.integers(0, 64)))
        embeddings[copy] = embeddings[copy - 1] + rng.normal(scale=0.05, size=8)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    return ids, phash, embeddings


def test_a_neighbour_sample_has_a_column_per_matching_hash_and_the_cosine() -> None:
    ids, phash, embeddings = universe(40)
    images = join_images(ids, phash, embeddings)
    thresholds = MatchThresholds(hamming={"phash": 4}, cosine=0.9)
    sample = neighbour_sample(images, thresholds, JoinState.empty(), size=5)
    assert sample.columns == ["image_id", "hamming_phash", "hamming_phash_partner", "cosine", "cosine_partner"]
    assert sorted(sample["image_id"].to_list()) == list(range(1_000, 1_005))
    assert sample.schema["cosine"] == pl.Float32 and sample["cosine"].null_count() == 0
    for row in sample.iter_rows(named=True):  # the values are those of the pair named
        a, b = images.positions(np.array([row["image_id"], row["hamming_phash_partner"]]))
        assert row["hamming_phash"] == bits(phash[a], phash[b])


def test_a_drop_updates_the_sample_as_a_computation_from_scratch_would() -> None:
    ids, phash, embeddings = universe(120)
    thresholds = MatchThresholds(hamming={"phash": 4}, cosine=0.9)
    first = np.argsort(ids[:100].astype(str))  # positions in "path" order, as the store gives them
    before = neighbour_sample(
        join_images(ids[first], phash[first], embeddings[first]), thresholds, JoinState.empty(), size=30
    )
    # the drop: twenty new images (copies of sampled ones among them, one entering the sample), and
    # one image retired that was a sampled image's nearest
    phash[100:105] = phash[np.flatnonzero(np.isin(ids, before["image_id"]))[:5]]
    embeddings[100:105] = embeddings[np.flatnonzero(np.isin(ids, before["image_id"]))[:5]]
    # exact copies of two sampled images' nearest images: equally near, so the first in path order wins
    for row, sampled in ((105, 3), (106, 4)):
        nearest = np.flatnonzero(ids == before["cosine_partner"][sampled])[0]
        phash[row], embeddings[row] = phash[nearest], embeddings[nearest]
    ids[110] = 500  # the smallest id: sampled from now on
    retired = int(np.flatnonzero(ids == before["cosine_partner"][0])[0])
    live = np.setdiff1d(np.arange(120), [retired])
    order = live[np.argsort(ids[live].astype(str))]
    images = join_images(ids[order], phash[order], embeddings[order])
    new = order >= 100
    updated = neighbour_sample(images, thresholds, JoinState.empty(), previous=before, new=new, size=30)
    scratch = neighbour_sample(images, thresholds, JoinState.empty(), size=30)
    assert updated.equals(scratch)
    assert 500 in updated["image_id"].to_list()
    assert (updated["hamming_phash"] == 0).sum() >= 5
