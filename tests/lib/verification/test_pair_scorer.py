import numpy as np

from dedup_pipeline.lib.verification.pair_scorer import PairScorer, fit_scorer


def test_fit_separates_and_survives_a_json_round_trip() -> None:
    rng = np.random.default_rng(0)
    copies = rng.normal([0.9, 2.0], 0.05, size=(200, 2))
    others = rng.normal([0.5, 20.0], 0.2, size=(800, 2))
    values = np.concatenate([copies, others])
    is_copy = np.arange(1000) < 200
    scorer = fit_scorer(["correlation", "phash_distance"], values, is_copy)
    probability = scorer.probability(values)
    assert probability[is_copy].min() > 0.9 and probability[~is_copy].max() < 0.1
    screen = fit_scorer(["correlation"], values[:, :1], is_copy).with_threshold(0.2)
    restored = PairScorer.from_json(scorer.with_threshold(0.7).with_screen(screen).to_json())
    assert restored.threshold == 0.7 and restored.features == ("correlation", "phash_distance")
    assert np.allclose(restored.probability(values), probability)
    assert restored.screen is not None and restored.screen.threshold == 0.2 and restored.screen.screen is None
    assert np.allclose(restored.screen.probability(values[:, :1]), screen.probability(values[:, :1]))


def test_a_constant_feature_does_not_divide_by_zero() -> None:
    values = np.stack([np.r_[np.ones(50), np.zeros(50)], np.full(100, 3.0)], axis=1)
    scorer = fit_scorer(["a", "constant"], values, np.arange(100) < 50)
    assert np.all(np.isfinite(scorer.probability(values)))


def test_values_outside_the_training_range_score_as_its_edge() -> None:
    rng = np.random.default_rng(1)
    copies = rng.normal([0.9, 0.9], 0.03, size=(200, 2))
    others = rng.normal([0.5, 0.5], 0.1, size=(400, 2))
    scorer = fit_scorer(["a", "b"], np.concatenate([copies, others]), np.arange(600) < 200)
    far = np.array([[-5.0, 0.5], [0.5, -5.0]])  # far below anything seen in training
    edge = np.stack([np.maximum(far[:, 0], scorer.lower[0]), np.maximum(far[:, 1], scorer.lower[1])], axis=1)
    assert np.allclose(scorer.probability(far), scorer.probability(edge))
    assert scorer.probability(far).max() < 0.5
