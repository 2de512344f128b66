"""The pair verifier's model: logistic regression over standardised features and their pairwise
products. Fit with scikit-learn; stored and applied as plain numbers (JSON), so reading a verdict
back needs neither the library nor a pickle.

A verifier may carry a ``screen``: a model of the same kind over the cheap features only, with a
threshold that passes nearly every copy the verifier accepts. Pairs the screen rejects are not
aligned at all, which is where the verifier's time goes.

Features are clipped to the range seen in training before scoring. Candidates that hash
thresholds nominate can lie far outside it (two unrelated pictures whose dHashes agree by
accident have a descriptor cosine below any training pair), and a polynomial extrapolated there
can call them certain copies."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class PairScorer:
    """``threshold`` is the smallest probability that counts as a copy."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    powers: np.ndarray  # (terms, features) exponents of each polynomial term
    weights: np.ndarray  # (terms,)
    intercept: float
    threshold: float
    screen: PairScorer | None = None
    lower: np.ndarray | None = None  # per feature: the training range values are clipped to
    upper: np.ndarray | None = None
    trained_share: float | None = None  # share of copies its probabilities are posteriors under (base_rate)
    loosest_threshold: float | None = None  # the first join may loosen ``threshold`` down to this, no further

    def probability(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        if self.lower is not None and self.upper is not None:
            values = np.clip(values, self.lower, self.upper)
        standardised = (values - self.mean) / self.scale
        logit = np.full(len(standardised), self.intercept)
        for exponents, weight in zip(self.powers, self.weights, strict=True):  # one term at a time: O(pairs) memory
            term = np.full(len(standardised), weight)
            for feature in np.flatnonzero(exponents):
                term *= standardised[:, feature] ** exponents[feature]
            logit += term
        return 0.5 * (1.0 + np.tanh(logit / 2))  # the logistic function, without exp overflow

    def with_threshold(self, threshold: float) -> PairScorer:
        return replace(self, threshold=float(threshold))

    def with_screen(self, screen: PairScorer | None) -> PairScorer:
        return replace(self, screen=screen)

    def with_base_rate(self, trained_share: float, loosest_threshold: float) -> PairScorer:
        return replace(self, trained_share=float(trained_share), loosest_threshold=float(loosest_threshold))

    def to_json(self) -> str:
        return json.dumps(self._as_dict())

    def _as_dict(self) -> dict[str, object]:
        return {
            "features": list(self.features),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "powers": self.powers.tolist(),
            "weights": self.weights.tolist(),
            "intercept": self.intercept,
            "threshold": self.threshold,
            "screen": None if self.screen is None else self.screen._as_dict(),
            "lower": None if self.lower is None else self.lower.tolist(),
            "upper": None if self.upper is None else self.upper.tolist(),
            "trained_share": self.trained_share,
            "loosest_threshold": self.loosest_threshold,
        }

    @staticmethod
    def from_json(text: str) -> PairScorer:
        return PairScorer._from_dict(json.loads(text))

    @staticmethod
    def _from_dict(data: dict) -> PairScorer:
        screen = data.get("screen")  # absent in verifiers stored before screens existed
        lower, upper = data.get("lower"), data.get("upper")  # absent before clipping existed
        trained_share = data.get("trained_share")  # absent before expected precision existed
        loosest = data.get("loosest_threshold")
        return PairScorer(
            tuple(data["features"]),
            np.array(data["mean"]),
            np.array(data["scale"]),
            np.array(data["powers"], dtype=np.int64),
            np.array(data["weights"]),
            float(data["intercept"]),
            float(data["threshold"]),
            None if screen is None else PairScorer._from_dict(screen),
            None if lower is None else np.array(lower),
            None if upper is None else np.array(upper),
            None if trained_share is None else float(trained_share),
            None if loosest is None else float(loosest),
        )


def fit_scorer(features: Sequence[str], values: np.ndarray, is_copy: np.ndarray) -> PairScorer:
    """Fit on labelled pairs (threshold 0.5 until calibration chooses one)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import PolynomialFeatures

    values = np.asarray(values, dtype=np.float64)
    mean = values.mean(axis=0)
    scale = values.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    polynomial = PolynomialFeatures(degree=2, include_bias=False).fit((values - mean) / scale)
    design = polynomial.transform((values - mean) / scale)
    model = LogisticRegression(C=1.0, max_iter=3000).fit(design, is_copy.astype(np.int64))
    return PairScorer(
        tuple(features),
        mean,
        scale,
        polynomial.powers_.astype(np.int64),
        model.coef_[0].astype(np.float64),
        float(model.intercept_[0]),
        0.5,
        lower=values.min(axis=0),
        upper=values.max(axis=0),
    )
