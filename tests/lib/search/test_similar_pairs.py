import numpy as np
import polars as pl
import pytest
from PIL import Image

from dedup_pipeline.lib.features.thumbnails import thumbnail
from dedup_pipeline.lib.search import similar_pairs as pairs_module
from dedup_pipeline.lib.search.similar_pairs import (
    MatchThresholds,
    candidate_pairs,
    directed_pairs,
    find_similar_pairs,
    screened,
    verifier_probability,
)
from dedup_pipeline.lib.verification.pair_features import ImageSignals, feature_names, screen_feature_names
from dedup_pipeline.lib.verification.pair_scorer import PairScorer
from tests.conftest import smooth_picture


def manifest(content: list[str], pixels: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"image_id": range(len(content)), "content_sha256": content, "pixel_sha256": pixels})


def test_union_of_evidence_with_every_distance() -> None:
    images = manifest(["c0", "c0", "c2", "c3", "c4"], ["p0", "p0", "p0", "p3", "p4"])
    hashes = {
        "phash": np.array([[0], [0], [0], [0b111], [2**40 - 1]], dtype=np.uint64),
        "dhash": np.array([[0], [1], [3], [0], [2**50 - 1]], dtype=np.uint64),
    }
    embeddings = np.array([[1, 0], [1, 0], [1, 0], [0.6, 0.8], [0, 1]], dtype=np.float32)
    pairs = find_similar_pairs(images, hashes, embeddings, MatchThresholds(hamming={"phash": 3}, cosine=0.95))
    rows = {(r["image_id_a"], r["image_id_b"]): r for r in pairs.iter_rows(named=True)}
    assert set(rows) == {(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)}
    assert rows[(0, 1)]["evidence"] == "content,pixels,phash,embedding"
    assert rows[(0, 2)]["evidence"] == "pixels,phash,embedding"
    assert rows[(0, 3)]["evidence"] == "phash"
    assert rows[(0, 3)]["dhash"] == 0 and rows[(0, 3)]["hamming"] == 3  # hamming: configured hashes only
    assert abs(rows[(0, 3)]["cosine"] - 0.6) < 1e-6


def test_without_embeddings_cosine_is_null() -> None:
    images = manifest(["a", "a"], ["p", "q"])
    pairs = find_similar_pairs(
        images, {"phash": np.zeros((2, 1), dtype=np.uint64)}, None, MatchThresholds(hamming={}, cosine=0.9)
    )
    assert pairs.height == 1 and pairs["cosine"].is_null().all() and pairs["hamming"].is_null().all()
    assert pairs["evidence"].to_list() == ["content"]


def test_directed_pairs_lists_both_directions() -> None:
    pairs = pl.DataFrame({"image_id_a": [0], "image_id_b": [5]})
    assert sorted(directed_pairs(pairs).iter_rows()) == [(0, 5), (5, 0)]


def test_mirror_hashes_find_flipped_copies_and_report_the_smaller_distance() -> None:
    images = manifest(["a", "b", "c"], ["p", "q", "r"])
    hashes = {
        "phash": np.array([[0], [2**64 - 1], [0b1111]], dtype=np.uint64),
        "phash_mirror": np.array([[2**64 - 1], [0b1], [2**40 - 1]], dtype=np.uint64),
    }
    thresholds = MatchThresholds(hamming={"phash": 2}, mirrored=frozenset({"phash"}))
    pairs = find_similar_pairs(images, hashes, None, thresholds)
    assert pairs.select("image_id_a", "image_id_b", "phash").rows() == [(0, 1, 0)]  # 0 equals 1 mirrored
    assert "phash_mirror" not in pairs.columns
    assert find_similar_pairs(images, hashes, None, MatchThresholds(hamming={"phash": 2})).height == 0


def test_candidate_pairs_without_exact_evidence() -> None:
    images = manifest(["a", "a", "b"], ["p", "p", "q"])
    hashes = {"phash": np.array([[0], [2**64 - 1], [1]], dtype=np.uint64)}
    thresholds = MatchThresholds(hamming={"phash": 1})
    with_exact, _ = candidate_pairs(images, hashes, None, thresholds)
    without_exact, cosine_found = candidate_pairs(images, hashes, None, thresholds, exact=False)
    assert with_exact.tolist() == [[0, 1], [0, 2]] and without_exact.tolist() == [[0, 2]]
    assert cosine_found is None


def descriptor_only_scorer(hash_names: list[str], threshold: float) -> PairScorer:
    """A verifier that looks at the descriptor cosine only: probability 0.5 at cosine 0.95."""
    return first_feature_scorer(feature_names(hash_names, with_embedding=False), threshold)


def first_feature_scorer(names: tuple[str, ...], threshold: float) -> PairScorer:
    return PairScorer(
        names,
        mean=np.zeros(len(names)),
        scale=np.ones(len(names)),
        powers=np.eye(len(names), dtype=np.int64),
        weights=np.r_[200.0, np.zeros(len(names) - 1)],
        intercept=-190.0,
        threshold=threshold,
    )


def test_with_a_verifier_it_judges_candidates_and_look_alikes_join_them(monkeypatch: pytest.MonkeyPatch) -> None:
    pictures = [smooth_picture(seed, size=(64, 64)) for seed in range(6)]
    pictures.append(pictures[0].copy())  # 6: pixel-identical to 0
    pictures.append(Image.fromarray(np.clip(np.asarray(pictures[1], dtype=np.int16) + 3, 0, 255).astype(np.uint8)))
    thumbnails = np.stack([thumbnail(p) for p in pictures])
    images = manifest([f"c{k}" for k in range(8)], ["p0", "p1", "p2", "p3", "p4", "p5", "p0", "p7"])
    hashes = {"phash": np.array([[0], [1], [2], [3], [4], [5], [0], [14]], dtype=np.uint64)}
    # phash <= 1 nominates many pairs; the verifier accepts only real look-alikes.
    thresholds = MatchThresholds(hamming={"phash": 1}, verifier=descriptor_only_scorer(["phash"], 0.5))
    pairs = find_similar_pairs(images, hashes, None, thresholds, thumbnails)
    rows = {(r["image_id_a"], r["image_id_b"]): r for r in pairs.iter_rows(named=True)}
    assert set(rows) == {(0, 6), (1, 7)}
    assert rows[(0, 6)]["evidence"] == "pixels,phash,verified"
    assert rows[(1, 7)]["evidence"] == "verified"  # found as a look-alike, not by its hash
    assert rows[(1, 7)]["verification_score"] > 0.5

    strict = MatchThresholds(hamming={"phash": 1}, verifier=descriptor_only_scorer(["phash"], 1.01))
    exact_only = find_similar_pairs(images, hashes, None, strict, thumbnails)
    assert exact_only.select("image_id_a", "image_id_b").rows() == [(0, 6)]  # exact copies always count

    # a screen that rejects every pair: not used on few candidates, else (with no budget for the
    # screen's best-ranked) nothing is aligned or verified and exact copies still count
    verifier = descriptor_only_scorer(["phash"], 0.5)
    closed = verifier.with_screen(first_feature_scorer(screen_feature_names(["phash"], False), 1.01))
    unscreened = find_similar_pairs(
        images, hashes, None, MatchThresholds(hamming={"phash": 1}, verifier=closed), thumbnails
    )
    assert unscreened.select("image_id_a", "image_id_b").rows() == [(0, 6), (1, 7)]
    monkeypatch.setattr(pairs_module, "ALIGNED_PAIRS_MIN", 0)
    monkeypatch.setattr(pairs_module, "ALIGNED_PER_IMAGE", 0.0)
    screened = find_similar_pairs(
        images, hashes, None, MatchThresholds(hamming={"phash": 1}, verifier=closed), thumbnails
    )
    assert screened.select("image_id_a", "image_id_b", "evidence").rows() == [(0, 6, "pixels,phash,verified")]
    signals = ImageSignals(thumbnails, hashes, None)
    i, j = np.array([1, 2]), np.array([7, 3])
    assert np.isnan(verifier_probability(closed, signals, frozenset(), i, j)).all()
    assert verifier_probability(closed, signals, frozenset(), i, j, screen=False).tolist() == pytest.approx(
        verifier_probability(verifier, signals, frozenset(), i, j).tolist()
    )


def test_the_screen_passes_its_threshold_and_its_best_ranked_up_to_a_budget() -> None:
    probability = np.array([0.9, 0.1, 0.5, 0.3, 0.95, 0.2])
    assert screened(probability, 0.8, 0).tolist() == [True, False, False, False, True, False]
    assert screened(probability, 0.8, 3).tolist() == [True, False, True, False, True, False]
    assert screened(probability, 0.99, 2).tolist() == [True, False, False, False, True, False]
    assert screened(probability, 0.99, 6).all() and screened(probability, 0.99, 60).all()
