import numpy as np

from dedup_pipeline.lib.calibration.thresholds import SECOND_NEAREST, synthesize_copies
from dedup_pipeline.lib.calibration.verifier_training import (
    calibrate_verifier,
    half_pairs,
    recall_budget_threshold,
    with_view_matches,
)
from dedup_pipeline.lib.features.hashing import perceptual_hashes
from dedup_pipeline.lib.features.thumbnails import thumbnail, thumbnail_descriptors
from dedup_pipeline.lib.search.look_alikes import LOOK_ALIKES, fit_space, nearest
from dedup_pipeline.lib.verification.pair_features import ImageSignals, feature_names, screen_feature_names
from tests.conftest import smooth_picture


def test_view_matches_follow_the_look_alikes_closest_first_without_repeats() -> None:
    look_alike_ids = np.array([[4, 5], [6, 7]])
    pairs = np.array([[0, 5], [0, 9], [0, 8], [1, 3]] + [[1, 100 + k] for k in range(LOOK_ALIKES + 2)])
    distances = np.array([1, 6, 2, 8] + [7] * (LOOK_ALIKES + 2))
    first, second = with_view_matches(look_alike_ids, (pairs, distances))
    assert first.tolist() == [4, 5, 8, 9]  # 5 is a look-alike already; 8 is closer than 9
    assert second[:2].tolist() == [6, 7] and len(second) == 2 + LOOK_ALIKES  # at most ten more
    assert second[2] == 100  # the 7-bit matches before the 8-bit one


def dataset(count: int) -> tuple[list, ImageSignals]:
    pictures = [smooth_picture(500 + k, size=(64, 64)) for k in range(count)]
    hashes = {"phash": np.array([perceptual_hashes(p, 8, ["phash"])["phash"] for p in pictures], np.uint64)}
    return pictures, ImageSignals(np.stack([thumbnail(p) for p in pictures]), hashes, None)


def test_training_pairs_label_the_source_and_exclude_exact_copies() -> None:
    pictures, signals = dataset(40)
    exact_keys = np.arange(40)
    exact_keys[39] = exact_keys[0]  # image 39 is an exact copy of image 0: never a negative of it
    sample = np.array([0, 5])
    copies = synthesize_copies(sample, [pictures[0], pictures[5]], ["phash"], [], 8, None, 3)
    space = fit_space(signals.descriptors)
    pairs = half_pairs(sample, copies, signals, exact_keys, None, SECOND_NEAREST, space)
    copy_ids, partners = pairs.copy_pairs[:, 0], pairs.copy_pairs[:, 1]
    owners = copies.owner[copy_ids - 40]
    assert (pairs.copy_labels == (partners == owners)).all()
    assert pairs.copy_labels.sum() == 6  # every copy has its source, once
    assert not np.any((owners == 0) & (partners == 39))
    look_alike_sets = nearest(
        space.vectors(copies.signals.descriptors), space.vectors(thumbnail_descriptors(signals.thumbnails))
    ).neighbours
    beyond = [
        set(partners[(copy_ids == 40 + k) & ~pairs.copy_labels].tolist()) - set(look_alike_sets[k].tolist())
        for k in range(len(copies.owner))
    ]
    assert all(beyond)  # random pictures besides look-alikes: the model sees the whole space
    assert (
        set(pairs.original_pairs[:, 0].tolist()) <= {0, 5}
        and 39 not in pairs.original_pairs[pairs.original_pairs[:, 0] == 0, 1]
    )


def test_calibrated_verifier_finds_held_out_copies() -> None:
    pictures, signals = dataset(160)
    tune_ids, holdout_ids = np.arange(0, 80, 2), np.arange(1, 80, 2)

    def half(ids: np.ndarray) -> tuple[np.ndarray, object]:
        return ids, synthesize_copies(ids, [pictures[k] for k in ids], ["phash"], [], 8, None, 4)

    result = calibrate_verifier(
        signals,
        half(tune_ids),
        half(holdout_ids),
        np.arange(160),
        None,
        SECOND_NEAREST,
        ["phash"],
        frozenset(),
        0.95,
        fit_space(signals.descriptors),
    )
    assert result is not None
    assert result.scorer.features == feature_names(["phash"], with_embedding=False)
    assert result.scorer.screen is not None
    assert result.scorer.screen.features == screen_feature_names(["phash"], with_embedding=False)
    assert 0 < result.scorer.threshold < 1
    assert result.tune_precision >= 0.95
    assert result.holdout_recall > 0.5 and result.holdout_precision > 0.8


def test_the_recall_budget_threshold_spends_at_most_the_budget() -> None:
    positives = np.linspace(0.0, 1.0, 1001)  # copies' probabilities, evenly spread
    balanced = 0.5
    threshold = recall_budget_threshold(positives, balanced, budget=0.02)
    accepted_before = (positives >= balanced).sum()
    accepted_after = (positives >= threshold).sum()
    assert threshold > balanced
    assert accepted_after >= (1 - 0.02) * accepted_before
    assert (positives >= np.nextafter(threshold, 1.0)).sum() < (1 - 0.02) * accepted_before  # the strictest such
    assert recall_budget_threshold(positives, balanced, budget=0.0) == balanced
    assert recall_budget_threshold(np.array([0.1, 0.2]), 0.5) == 0.5  # nothing accepted: stays where it was
