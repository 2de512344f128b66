"""The expected precision of verdicts at the candidates' own base rate, by prior-shift EM."""

import numpy as np

from dedup_pipeline.lib.verification.base_rate import (
    copy_share,
    expected_precision,
    operating_point,
    rescaled,
    training_share,
)


def posteriors(is_copy: np.ndarray, trained_share: float, seed: int) -> np.ndarray:
    """A calibrated verifier's probabilities under ``trained_share``: copies score N(2, 1), others
    N(-1, 1), and the probability is the exact posterior at that share."""
    score = np.where(is_copy, 2.0, -1.0) + np.random.default_rng(seed).normal(size=len(is_copy))
    likelihood_ratio = np.exp(-((score - 2.0) ** 2) / 2) / np.exp(-((score + 1.0) ** 2) / 2)
    odds = likelihood_ratio * trained_share / (1 - trained_share)
    return odds / (1 + odds)


def test_the_share_and_the_precision_of_the_candidates_are_recovered() -> None:
    trained = training_share(positives=1_000, look_alike_negatives=9_000)
    assert trained == 0.1
    is_copy = np.zeros(200_000, dtype=bool)
    is_copy[:1_000] = True  # 0.5% of the candidates: far rarer than in training
    probability = posteriors(is_copy, trained, seed=0)
    assert abs(copy_share(probability, trained) - 0.005) < 0.0005
    for threshold in (0.5, 0.9, 0.99):
        flagged = probability >= threshold
        expected = expected_precision(probability, trained, threshold)
        assert expected.flagged == flagged.sum() and expected.candidates == len(probability)
        assert abs(expected.precision - is_copy[flagged].mean()) < 0.03
    # precision on the training balance would be far too kind at the loose threshold
    naive = probability[probability >= 0.5].mean()
    assert naive - is_copy[probability >= 0.5].mean() > 0.1


def test_rescaling_to_the_same_share_changes_nothing_and_nothing_flagged_is_precise() -> None:
    probability = np.array([0.01, 0.5, 0.99])
    assert np.allclose(rescaled(probability, 0.1, 0.1), probability)
    assert rescaled(probability, 0.1, 0.01)[1] < 0.5
    none = expected_precision(np.array([0.1, np.nan]), 0.1, threshold=0.9)
    assert (none.flagged, none.precision, none.candidates) == (0, 1.0, 2)
    assert copy_share(np.zeros(0), 0.1) == 0.0


def test_the_operating_point_is_the_loosest_threshold_reaching_the_target() -> None:
    trained = 0.1
    is_copy = np.zeros(300_000, dtype=bool)
    is_copy[:3_000] = True
    probability = posteriors(is_copy, trained, seed=1)
    threshold, expected = operating_point(probability, trained, target=0.95, floor=0.0)
    assert expected.flagged > 300
    assert expected.precision >= 0.95 and expected.flagged == (probability >= threshold).sum()
    looser = probability[probability < threshold].max()
    assert expected_precision(probability, trained, looser).precision < 0.95  # one step looser falls short
    assert abs(is_copy[probability >= threshold].mean() - expected.precision) < 0.03
    # never looser than the floor; nothing reaches an impossible target
    assert operating_point(probability, trained, target=0.5, floor=0.999)[0] >= 0.999
    impossible, none = operating_point(probability, trained, target=1.0, floor=0.0)
    assert impossible > probability.max() and none.flagged == 0
