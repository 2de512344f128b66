"""The precision to expect of the verifier's verdicts on the join's own candidates.

The verifier is trained on pairs of the sampled images: each synthetic copy against its source
(positives) and against the source's look-alikes (hard negatives; random pairs besides). Its
probability is therefore a posterior under the training share of copies among those pairs, about
one in ten, while among the join's candidates (about ten look-alikes per image, in data where few
images have a copy at all) copies are far rarer. Precision measured on the training balance says
little about the flags of the join; the flags' precision depends on the candidates' base rate.

The base rate is estimated from the candidates themselves, by the classic prior-shift EM (Saerens,
Latinne and Decaestecker, "Adjusting the outputs of a classifier to new a priori probabilities",
2002): rescale each candidate's odds from the training share to a guessed share, take the mean
posterior as the next guess, repeat. The expected precision of the flags is then the mean rescaled
posterior of the pairs flagged. Its assumption: a real copy looks to the verifier like a synthetic
copy, and a look-alike of the join like a look-alike of the training pairs (only the shares
differ). The random pairs of training are left out of the training share, since the verdicts that
matter fall where look-alikes are (see :func:`training_share`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EM_ROUNDS = 500
EM_TOLERANCE = 1e-10
# Odds are kept inside (1e-12, 1e12): a probability of exactly 0 or 1 (rounding) stays finite.
PROBABILITY_FLOOR = 1e-12


@dataclass(frozen=True)
class ExpectedPrecision:
    """What the verifier's verdicts on one set of candidates should be worth."""

    candidates: int  # judged by the verifier (exact copies aside)
    flagged: int  # of those, accepted
    copy_share: float  # estimated share of copies among the candidates
    precision: float  # expected share of real copies among the flagged (1.0 when none are)


def training_share(positives: int, look_alike_negatives: int) -> float:
    """The share of copies the verifier's probabilities are posteriors under, where it matters:
    among the positives and the look-alike negatives (random pairs fall elsewhere)."""
    return positives / max(1, positives + look_alike_negatives)


def _odds(probability: np.ndarray) -> np.ndarray:
    clipped = np.clip(probability, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return clipped / (1 - clipped)


def rescaled(probability: np.ndarray, trained_share: float, share: float) -> np.ndarray:
    """Posteriors under ``share`` instead of ``trained_share``: odds times the ratio of prior odds."""
    odds = _odds(probability) * (share / (1 - share)) / (trained_share / (1 - trained_share))
    return odds / (1 + odds)


def copy_share(probability: np.ndarray, trained_share: float) -> float:
    """The share of copies among candidates with these posteriors (under ``trained_share``): the
    fixed point of the prior-shift EM, started at the training share. Most candidates of a join
    score 0 (its screen rejects them unaligned): they are counted, not rescaled one by one."""
    if not len(probability):
        return 0.0
    scored = probability[probability > 0]
    zeros = len(probability) - len(scored)
    share = trained_share
    for _ in range(EM_ROUNDS):
        total = rescaled(scored, trained_share, share).sum() + zeros * rescaled(np.zeros(1), trained_share, share)[0]
        updated = float(np.clip(total / len(probability), PROBABILITY_FLOOR, 1 - 1e-9))
        if abs(updated - share) < EM_TOLERANCE:
            return updated
        share = updated
    return share


def expected_precision(
    probability: np.ndarray, trained_share: float, threshold: float, share: float | None = None
) -> ExpectedPrecision:
    """The expected precision of accepting candidates at ``threshold``. ``probability``: the
    verifier's, one per candidate it judged; NaN where its screen rejected the pair unaligned
    (counted as a candidate that is not a copy: the screen passes nearly every copy). ``share``:
    the candidates' :func:`copy_share` when already known."""
    scored = np.nan_to_num(np.asarray(probability, dtype=np.float64), nan=0.0)
    share = copy_share(scored, trained_share) if share is None else share
    flagged = scored >= threshold
    posterior = rescaled(scored[flagged], trained_share, share)
    precision = float(posterior.mean()) if flagged.any() else 1.0
    return ExpectedPrecision(len(scored), int(flagged.sum()), share, precision)


def operating_point(
    probability: np.ndarray, trained_share: float, target: float, floor: float
) -> tuple[float, ExpectedPrecision]:
    """The loosest threshold, not below ``floor``, at which the expected precision of the flags
    reaches ``target``, and that expectation. A rescaled posterior rises with the probability, so
    the flags' mean posterior only falls as the threshold loosens: the answer is where it crosses
    the target. When even the most probable candidate falls short, nothing is accepted (the
    threshold is then above every probability)."""
    scored = np.nan_to_num(np.asarray(probability, dtype=np.float64), nan=0.0)
    share = copy_share(scored, trained_share)
    order = np.argsort(-scored, kind="stable")
    ranked = scored[order]
    mean_posterior = np.cumsum(rescaled(ranked, trained_share, share)) / np.arange(1, len(ranked) + 1)
    # a threshold flags a whole group of equal probabilities: only a group's last rank is a choice
    last_of_group = np.r_[ranked[1:] != ranked[:-1], True] if len(ranked) else np.zeros(0, bool)
    allowed = np.flatnonzero(last_of_group & (ranked >= floor) & (mean_posterior >= target))
    if not len(allowed):
        above_all = float(np.nextafter(max(1.0, float(ranked[0]) if len(ranked) else 1.0), np.inf))
        return above_all, ExpectedPrecision(len(scored), 0, share, 1.0)
    chosen = int(allowed[-1])
    return float(ranked[chosen]), ExpectedPrecision(len(scored), chosen + 1, share, float(mean_posterior[chosen]))
