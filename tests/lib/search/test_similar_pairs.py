from dataclasses import replace

import numpy as np
import polars as pl
import pytest
from PIL import Image

from dedup_pipeline.lib.features.thumbnails import thumbnail, thumbnail_descriptors
from dedup_pipeline.lib.features.views import nominated, view_hashes
from dedup_pipeline.lib.search.candidates import local_candidates
from dedup_pipeline.lib.search.criteria import EXACT_EVIDENCE, MatchThresholds
from dedup_pipeline.lib.search.look_alikes import fit_space
from dedup_pipeline.lib.search.similar_pairs import JoinImages, JoinState, join, measured_pairs
from dedup_pipeline.lib.verification import judging
from dedup_pipeline.lib.verification.judging import screen_cutoff, verifier_probability
from dedup_pipeline.lib.verification.pair_features import ImageSignals, feature_names, screen_feature_names
from dedup_pipeline.lib.verification.pair_scorer import PairScorer
from tests.conftest import smooth_picture


def find_similar_pairs(
    manifest: pl.DataFrame,
    hashes: dict[str, np.ndarray],
    embeddings: np.ndarray | None,
    thresholds: MatchThresholds,
    thumbnails: np.ndarray | None = None,
) -> pl.DataFrame:
    """A from-scratch join of ``manifest``'s images with pairs by position; with a verifier but no
    look-alike space, the space is fit on these images."""
    images = JoinImages(
        np.arange(manifest.height, dtype=np.int64),
        {name: manifest[column].to_numpy() for name, column in EXACT_EVIDENCE.items()},
        ImageSignals(thumbnails, hashes, embeddings),
    )
    if thresholds.verifier is not None and thresholds.look_alikes is None:
        thresholds = replace(thresholds, look_alikes=fit_space(images.signals.descriptors))
    state, _ = join(images, thresholds)
    return state.pairs


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


def flat_thumbnail(colour: tuple[int, int, int], seed: int) -> np.ndarray:
    """A 32 x 32 fill of ``colour`` with a grain of +-1 level (rounding and compression noise)."""
    grain = np.random.default_rng(seed).integers(-1, 2, size=(32, 32, 3))
    return np.clip(np.array(colour) + grain, 0, 255).astype(np.uint8)


def test_hashes_and_embeddings_of_flat_pictures_are_no_evidence_unless_the_fill_is_the_same() -> None:
    colours = [(0, 0, 0), (12, 12, 12), (200, 30, 30), (30, 30, 200), (250, 250, 250), (12, 12, 12)]
    flats = np.stack([flat_thumbnail(colour, seed) for seed, colour in enumerate(colours)])
    detailed = np.stack([thumbnail(smooth_picture(1)), thumbnail(smooth_picture(1))])
    thumbnails = np.concatenate([flats, detailed])
    count = len(thumbnails)
    images = manifest([f"c{k}" for k in range(count)], [f"p{k}" for k in range(count)])
    # every hash and embedding equal, as a flat picture's nearly are: only the pixels can tell
    hashes = {"dhash": np.zeros((count, 1), dtype=np.uint64)}
    embeddings = np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (count, 1))
    thresholds = MatchThresholds(hamming={"dhash": 8}, cosine=0.85)
    pairs = find_similar_pairs(images, hashes, embeddings, thresholds, thumbnails)
    found = {(row["image_id_a"], row["image_id_b"]) for row in pairs.iter_rows(named=True)}
    assert found == {(1, 5), (6, 7)}  # the same dark fill twice, and a detailed copy
    without_pixels = find_similar_pairs(images, hashes, embeddings, thresholds)
    assert without_pixels.height == count * (count - 1) // 2  # nothing to tell them apart with


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


def test_local_candidates_with_and_without_exact_evidence() -> None:
    digests = {"content": np.array(["a", "a", "b"]), "pixels": np.array(["p", "p", "q"])}
    hashes = {"phash": np.array([[0], [2**64 - 1], [1]], dtype=np.uint64)}
    thresholds = MatchThresholds(hamming={"phash": 1})
    assert local_candidates(digests, hashes, None, None, thresholds).tolist() == [[0, 1], [0, 2]]
    assert local_candidates({}, hashes, None, None, thresholds).tolist() == [[0, 2]]
    new = np.array([False, True, False])
    assert local_candidates(digests, hashes, None, None, thresholds, new).tolist() == [[0, 1]]


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
    monkeypatch.setattr(judging, "ALIGNED_PAIRS_MIN", 0)
    monkeypatch.setattr(judging, "ALIGNED_PER_IMAGE", 0.0)
    screened = find_similar_pairs(
        images, hashes, None, MatchThresholds(hamming={"phash": 1}, verifier=closed), thumbnails
    )
    assert screened.select("image_id_a", "image_id_b", "evidence").rows() == [(0, 6, "pixels,phash,verified")]
    signals = ImageSignals(thumbnails, hashes, None)
    i, j = np.array([1, 2]), np.array([7, 3])
    rejected, cutoff = verifier_probability(closed, signals, frozenset(), i, j, budget=0)
    assert np.isnan(rejected).all() and cutoff == 1.01
    every, cutoff = verifier_probability(closed, signals, frozenset(), i, j)  # no cutoff, no budget: all
    assert cutoff is None and every.tolist() == pytest.approx(
        verifier_probability(verifier, signals, frozenset(), i, j)[0].tolist()
    )


def test_alignment_in_batches_gives_the_same_probabilities_and_reports_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    thumbnails = np.stack([thumbnail(smooth_picture(seed, size=(48, 40))) for seed in range(9)])
    signals = ImageSignals(thumbnails, {"phash": np.arange(9, dtype=np.uint64).reshape(-1, 1)}, None)
    i, j = np.triu_indices(9, 1)
    verifier = descriptor_only_scorer(["phash"], 0.5)
    whole, _ = verifier_probability(verifier, signals, frozenset(), i, j)
    monkeypatch.setattr(judging, "ALIGNED_AT_ONCE", 5)
    heard: list[tuple[int, int]] = []
    batched, _ = verifier_probability(verifier, signals, frozenset(), i, j, progress=lambda *done: heard.append(done))
    assert batched.tolist() == whole.tolist()
    assert heard == [(0, 36)] + [(5 * k, 36) for k in range(1, 8)] + [(36, 36)]


def test_measured_pairs_score_every_pair_even_those_the_screen_turns_away() -> None:
    thumbnails = np.stack([thumbnail(smooth_picture(seed, size=(48, 40))) for seed in range(6)])
    hashes = {"phash": np.arange(6, dtype=np.uint64).reshape(-1, 1)}
    images = JoinImages(
        np.arange(6, dtype=np.int64),
        {name: np.arange(6).astype(str) for name in EXACT_EVIDENCE},
        ImageSignals(thumbnails, hashes, None),
    )
    verifier = descriptor_only_scorer(["phash"], 0.5)
    closed = verifier.with_screen(first_feature_scorer(screen_feature_names(["phash"], False), 1.01))
    thresholds = MatchThresholds(hamming={"phash": 1}, verifier=closed, screen_cutoff=1.01)
    pairs = np.array([[0, 1], [2, 5]])
    measured = measured_pairs(images, thresholds, JoinState.empty(), pairs)  # duplicates or not
    assert measured.select("image_id_a", "image_id_b").rows() == [(0, 1), (2, 5)]
    scores = measured["verification_score"]
    assert scores.null_count() == 0 and not scores.is_nan().any()
    expected = verifier_probability(verifier, images.signals, frozenset(), pairs[:, 0], pairs[:, 1])[0]
    assert scores.to_list() == pytest.approx(expected.tolist())


def test_the_screen_cutoff_admits_its_threshold_and_its_best_ranked_up_to_a_budget() -> None:
    probability = np.array([0.9, 0.1, 0.5, 0.3, 0.95, 0.2])
    assert screen_cutoff(probability, 0.8, 0) == 0.8
    assert screen_cutoff(probability, 0.8, 3) == 0.5  # the three best: 0.95, 0.9, 0.5
    assert screen_cutoff(probability, 0.99, 2) == 0.9
    assert screen_cutoff(probability, 0.99, 6) == 0.0 and screen_cutoff(probability, 0.99, 60) == 0.0


def planted_universe(count: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """Thumbnails of distinct pictures, near copies (brightened, shifted, mirrored) and exact copies."""
    rng = np.random.default_rng(seed)
    pictures = [np.asarray(thumbnail(smooth_picture(int(s), size=(48, 40)))) for s in rng.integers(0, 10**6, count)]
    for k in range(0, count // 3):
        source = pictures[int(rng.integers(0, len(pictures)))]
        kind = k % 4
        if kind == 0:
            copy = np.clip(source.astype(np.int16) + 12, 0, 255).astype(np.uint8)
        elif kind == 1:
            copy = np.roll(source, 1, axis=1)
        elif kind == 2:
            copy = source[:, ::-1]
        else:
            copy = source.copy()
        pictures.append(np.ascontiguousarray(copy))
    order = rng.permutation(len(pictures))
    thumbnails = np.stack(pictures)[order]
    return thumbnails, [f"{rng.choice(['train', 'test'])}/{k:04d}.png" for k in range(len(thumbnails))]


def join_images(live: list[tuple[str, int]], thumbnails: np.ndarray) -> JoinImages:
    """The live images (path, universe row), in path order; a row's image id is the row itself."""
    live = sorted(live)
    rows = np.array([row for _, row in live], dtype=np.int64)
    views = view_hashes(thumbnails[rows])
    signals = ImageSignals(
        thumbnails[rows],
        {"phash": views[:, [0]], "phash_mirror": views[:, [1]]},
        thumbnail_descriptors(thumbnails[rows]),
        views=views,
    )
    digests = {"content": rows.astype(str), "pixels": np.array([thumbnails[row].tobytes().hex()[:40] for row in rows])}
    return JoinImages(rows, digests, signals)


@pytest.mark.parametrize("screened", [True, False], ids=["with a screen", "without a screen"])
def test_an_incremental_join_equals_a_join_from_scratch_after_any_drops(
    screened: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(judging, "ALIGNED_PAIRS_MIN", 40)  # the first join sets a screen cutoff that matters
    thumbnails, paths = planted_universe(150, seed=7)
    scorer = PairScorer(
        feature_names(["phash"], with_embedding=True),
        mean=np.zeros(8),
        scale=np.ones(8),
        powers=np.eye(8, dtype=np.int64),
        weights=np.r_[60.0, 12.0, 0, 0, 0, 0, 0, 0],  # descriptor cosine and gray correlation
        intercept=-62.0,
        threshold=0.5,
    )
    screen_names = screen_feature_names(["phash"], True)
    screen = PairScorer(
        screen_names, np.zeros(4), np.ones(4), np.eye(4, dtype=np.int64), np.r_[10.0, 0, 0, 0], -5.0, 0.99
    )
    thresholds = MatchThresholds(
        hamming={"phash": 6},
        cosine=0.97,
        mirrored=frozenset({"phash"}),
        verifier=(scorer.with_screen(screen) if screened else scorer).with_base_rate(
            trained_share=0.1, loosest_threshold=0.2
        ),
        look_alikes=fit_space(thumbnail_descriptors(thumbnails)),
    )
    rng = np.random.default_rng(8)
    rows = rng.permutation(len(thumbnails))
    live = {paths[row]: int(row) for row in rows[:60]}  # path -> universe row (its content)
    unused = list(rows[60:])
    state, _ = join(join_images(list((p, r) for p, r in live.items()), thumbnails), thresholds)
    # what the first join sets is stored with the calibration, and later joins apply it
    thresholds = replace(
        thresholds,
        screen_cutoff=state.screen_cutoff,
        copy_share=state.expected.copy_share,
        verifier=thresholds.verifier.with_threshold(state.operating_threshold),
    )
    assert (0 < state.screen_cutoff < 1) if screened else state.screen_cutoff is None
    assert 0.2 <= state.operating_threshold <= 0.5 and 0 < state.expected.copy_share < 1
    assert state.pairs["copy_probability"].is_not_null().all()
    seen = {"added": 0, "deleted": 0, "changed": 0, "pairs": set()}
    for step in range(7):
        for path in rng.choice(sorted(live), size=3, replace=False):  # deleted
            del live[path]
            seen["deleted"] += 1
        for path in rng.choice(sorted(live), size=2, replace=False):  # rewritten in place: new content
            live[path] = int(unused.pop())
            seen["changed"] += 1
        for _ in range(int(rng.integers(5, 15))):  # added
            row = int(unused.pop())
            live[paths[row]] = row
            seen["added"] += 1
        images = join_images(list(live.items()), thumbnails)
        state, report = join(images, thresholds, state)
        scratch, _ = join(images, thresholds)
        assert report.new_images < len(live)
        assert state.pairs.sort("image_id_a", "image_id_b").equals(scratch.pairs.sort("image_id_a", "image_id_b")), step
        assert np.array_equal(state.neighbours, scratch.neighbours), step
        seen["pairs"] |= set(state.pairs.select("image_id_a", "image_id_b").iter_rows())
    assert len(seen["pairs"]) >= 10  # the sequence did find duplicates, through every rule
    found_by = ",".join(state.pairs["found_by"].to_list())
    assert {"look-alike", "view", "phash", "pixels"} <= set(found_by.split(","))


def test_a_stored_pair_that_leaves_the_look_alike_lists_is_dropped_as_from_scratch() -> None:
    # B is a noisy copy of A that only the look-alike lists nominate; then 12 exact copies of A
    # arrive, with paths that sort first: they fill A's list and, tied with A, B's list as well
    rng = np.random.default_rng(11)
    others = [np.asarray(thumbnail(smooth_picture(int(s), size=(40, 40)))) for s in rng.integers(0, 10**6, 30)]
    noisy = (
        (picture, np.clip(picture + rng.normal(0, 15, picture.shape), 0, 255).astype(np.uint8))
        for picture in others
        for _ in range(10)
    )
    original, copy = next((a, b) for a, b in noisy if not nominated(view_hashes(a[None]), view_hashes(b[None]))[0])
    others = [picture for picture in others if picture is not original]
    thumbnails = np.stack([*others, original, copy, *([original] * 12)])
    paths = [f"b/{k:02d}.png" for k in range(29)] + ["b/a.png", "b/b.png"] + [f"a/{k:02d}.png" for k in range(12)]
    scorer = first_feature_scorer(feature_names(["phash"], with_embedding=True), 0.5)  # descriptor cosine >= 0.95
    thresholds = MatchThresholds(verifier=scorer, look_alikes=fit_space(thumbnail_descriptors(thumbnails)))
    live = list(zip(paths[:31], range(31), strict=True))
    state, _ = join(join_images(live, thumbnails), thresholds)
    a, b = 29, 30
    assert state.pairs.filter((pl.col("image_id_a") == a) & (pl.col("image_id_b") == b))["found_by"].to_list() == [
        "look-alike"
    ]
    images = join_images(list(zip(paths, range(len(paths)), strict=True)), thumbnails)
    state, report = join(images, replace(thresholds, screen_cutoff=state.screen_cutoff), state)
    scratch, _ = join(images, replace(thresholds, screen_cutoff=state.screen_cutoff))
    assert state.pairs.sort("image_id_a", "image_id_b").equals(scratch.pairs.sort("image_id_a", "image_id_b"))
    assert (a, b) not in set(state.pairs.select("image_id_a", "image_id_b").iter_rows()) and report.pairs_removed == 1
