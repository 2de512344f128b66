"""Judging candidate pairs: every distance of each pair (not only the one that nominated it), the
criteria that hold, and the verdict.

Without a trained verifier, a candidate is a duplicate when any criterion holds. Hash and embedding
criteria do not hold for a pair with a picture that has almost no detail (a blank, a flat fill:
``thumbnails.MIN_DETAIL``) unless both show the same fill: such a picture's hashes are rounding
noise, and its embedding is its colour. With one (see
``pair_features``), the verifier is the judge: a pair is a duplicate when it is an exact copy or
the verifier's probability reaches its threshold; the other criteria stay in ``evidence`` as
supporting facts. Aligning thumbnails is where the verifier's time goes, so its screen (a model
of the cheap features) comes first and only the pairs it scores at least the join's screen cutoff
are aligned. Every verdict depends on the pair alone, so a pair judged in a data drop gets the
verdict a from-scratch run gives it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from dedup_pipeline.lib.features.hashing import MIRROR_SUFFIX
from dedup_pipeline.lib.features.views import nominated, pair_views
from dedup_pipeline.lib.search.cosine_join import pair_similarities
from dedup_pipeline.lib.search.criteria import (
    EMBEDDING_EVIDENCE,
    LOOK_ALIKE_NOMINATION,
    VERIFIED_EVIDENCE,
    VIEW_NOMINATION,
    MatchThresholds,
)
from dedup_pipeline.lib.search.hamming_join import mirror_aware_distances, pair_distances
from dedup_pipeline.lib.verification.base_rate import (
    ExpectedPrecision,
    expected_precision,
    operating_point,
    rescaled,
)
from dedup_pipeline.lib.verification.pair_features import (
    VIEW_DISTANCE,
    ImageSignals,
    scorer_inputs,
    screen_features,
    with_pixel_features,
)
from dedup_pipeline.lib.verification.pair_scorer import PairScorer

# The first join under a calibration aligns the screen's best-ranked candidates up to a budget (and
# every candidate when there are no more than ALIGNED_PAIRS_MIN, or ALIGNED_PER_IMAGE per image);
# the screen probability that admits them becomes the cutoff later drops apply to their pairs.
ALIGNED_PAIRS_MIN = 20_000
ALIGNED_PER_IMAGE = 0.25
ALIGNED_AT_ONCE = 2_048  # pairs aligned in one batch (every feature is the pair's own: batches do not matter)
Progress = Callable[[int, int], None]  # (pairs aligned so far, pairs to align)


def screen_cutoff(probability: np.ndarray, threshold: float, budget: int) -> float:
    """The screen probability from which candidates are aligned: the screen's own threshold, or
    lower to admit its ``budget`` best-ranked candidates (0 when that is all of them). The screen's
    threshold passes 99.5% of the synthetic copies the verifier accepts, but real near-duplicates
    (other crops and processing of one shot) score lower on the cheap features: on 20,000 CIFAR-10
    images it passed 294 of the 392 pairs the verifier accepts when it aligns every candidate,
    while the screen's 5,000 most probable candidates (of 172,117) held 390 of them. Its ranking is
    good where its threshold is not."""
    if budget >= len(probability):
        return 0.0
    if budget <= 0:
        return float(threshold)
    best = float(np.partition(probability, len(probability) - budget)[len(probability) - budget])
    return min(float(threshold), best)


def alignment_budget(image_count: int) -> int:
    return max(ALIGNED_PAIRS_MIN, int(ALIGNED_PER_IMAGE * image_count))


@dataclass(frozen=True)
class Verdicts:
    """The duplicates among judged pairs (positions ``i < j``, every column of ``similar_pairs``),
    the screen cutoff the verifier applied (set by this judgement when the thresholds had none)
    and, from that first judgement, the verifier's operating threshold and the precision its
    verdicts should have (``base_rate``)."""

    pairs: pl.DataFrame
    screen_cutoff: float | None
    operating_threshold: float | None = None
    expected: ExpectedPrecision | None = None


def verifier_probability(
    verifier: PairScorer,
    signals: ImageSignals,
    mirrored: frozenset[str],
    i: np.ndarray,
    j: np.ndarray,
    cutoff: float | None = None,
    always: np.ndarray | None = None,
    budget: int | None = None,
    progress: Progress | None = None,
) -> tuple[np.ndarray, float | None]:
    """The verifier's probability that each pair ``(i[k], j[k])`` is a copy, NaN where its screen
    scored the pair below ``cutoff`` (pairs in ``always`` are aligned regardless), and the cutoff
    applied. Without a ``cutoff``, one is set from the screen's scores of these pairs to align
    ``budget`` of them (see :func:`screen_cutoff`); with neither, every pair is aligned. Pairs are
    aligned ``ALIGNED_AT_ONCE`` at a time, each batch reported to ``progress(done, total)``."""
    if VIEW_DISTANCE not in verifier.features:
        raise ValueError("the stored pair verifier predates geometric views: materialize match_thresholds again")
    hash_names, _ = scorer_inputs(verifier.features)
    views = pair_views(signals.views, i, j)
    screen_input = screen_features(signals, i, j, hash_names, mirrored, views)
    passed = np.ones(len(i), dtype=bool)
    if verifier.screen is not None and (cutoff is not None or budget is not None):
        screen_probability = verifier.screen.probability(screen_input)
        if cutoff is None:
            cutoff = screen_cutoff(screen_probability, verifier.screen.threshold, budget)
        passed = screen_probability >= cutoff
        if always is not None:
            passed |= always
    probability = np.full(len(i), np.nan)
    aligned = np.flatnonzero(passed)
    if progress is not None:
        progress(0, len(aligned))
    for start in range(0, len(aligned), ALIGNED_AT_ONCE):
        rows = aligned[start : start + ALIGNED_AT_ONCE]
        probability[rows] = verifier.probability(
            with_pixel_features(signals.thumbnails, i[rows], j[rows], screen_input[rows], views.selected(rows))
        )
        if progress is not None:
            progress(start + len(rows), len(aligned))
    return probability, cutoff


def judge(
    pairs: np.ndarray,
    digests: Mapping[str, np.ndarray],
    signals: ImageSignals,
    thresholds: MatchThresholds,
    look_alike: np.ndarray | None = None,
    everything: bool = False,
    progress: Progress | None = None,
) -> Verdicts:
    """Judge candidate ``pairs`` ((n, 2) positions, ``i < j``, sorted).

    Columns of the duplicates: ``content_equal``, ``pixels_equal``, one distance column per
    computed hash (the smaller of the direct and the mirrored distance for hashes matched
    mirror-aware), ``hamming`` (smallest distance over the configured hashes), ``cosine``,
    ``verification_score`` (the verifier's probability; null without a verifier),
    ``copy_probability`` (that probability at the first join's estimated share of copies among its
    candidates: the chance the pair is a real copy, see ``base_rate``; 1 for exact copies; null
    without it), ``evidence``
    (comma-separated criteria that hold, in a fixed order) and ``found_by`` (the rules that made
    it a candidate: the criteria, ``view`` and ``look-alike``; ``look_alike`` marks the pairs in
    the look-alike lists). With a verifier and no ``screen_cutoff`` yet, every pair is scored by
    the screen and the cutoff is set from them (see :func:`screen_cutoff`). With ``everything``,
    the pairs judged not duplicates are returned too (to measure pairs a person marked).
    ``progress`` hears how many pairs the verifier aligned (see :func:`verifier_probability`).
    """
    i, j = pairs[:, 0], pairs[:, 1]
    columns: dict[str, object] = {"image_id_a": i, "image_id_b": j}
    criteria: dict[str, np.ndarray] = {}
    nominations: dict[str, np.ndarray] = {}  # the rules that hold, evidence or not
    for name, values in digests.items():
        columns[f"{name}_equal"] = criteria[name] = nominations[name] = values[i] == values[j]
    informative = signals.summaries_count(i, j)  # a flat picture's hashes and embedding say nothing
    for algorithm, words in signals.hashes.items():
        if algorithm.endswith(MIRROR_SUFFIX):
            continue
        mirrored = thresholds.mirror_hashes(algorithm, signals.hashes)
        distances = pair_distances(words, i, j) if mirrored is None else mirror_aware_distances(words, mirrored, i, j)
        columns[algorithm] = distances
        if algorithm in thresholds.hamming:
            nominations[algorithm] = distances <= thresholds.hamming[algorithm]
            criteria[algorithm] = nominations[algorithm] & informative
    configured = [columns[algorithm] for algorithm in thresholds.hamming]
    columns["hamming"] = np.min(np.stack(configured), axis=0) if configured else None
    columns["cosine"] = None
    if signals.embeddings is not None:
        columns["cosine"] = similarity = pair_similarities(signals.embeddings, i, j)
        if thresholds.cosine is not None:
            nominations[EMBEDDING_EVIDENCE] = similarity >= thresholds.cosine
            criteria[EMBEDDING_EVIDENCE] = nominations[EMBEDDING_EVIDENCE] & informative
    if thresholds.verifier is not None:
        nominations[VIEW_NOMINATION] = nominated(signals.views[i], signals.views[j])
    if look_alike is not None:
        nominations[LOOK_ALIKE_NOMINATION] = look_alike

    columns["verification_score"] = columns["copy_probability"] = None
    keep = np.logical_or.reduce(list(criteria.values())) if criteria else np.zeros(len(i), dtype=bool)
    verifier, cutoff = thresholds.verifier, thresholds.screen_cutoff
    operating = expected = None
    if verifier is not None:
        exact = np.logical_or.reduce([criteria[name] for name in digests]) if digests else np.zeros(len(i), bool)
        probability, cutoff = verifier_probability(
            verifier,
            signals,
            thresholds.mirrored,
            i,
            j,
            cutoff,
            always=exact,
            budget=alignment_budget(len(signals)),
            progress=progress,
        )
        threshold, share = verifier.threshold, thresholds.copy_share
        if verifier.trained_share is not None and share is None:  # the first judgement sets the operating point
            operating, expected = _operating_point(verifier, probability[~exact], thresholds.target_precision)
            threshold, share = operating, expected.copy_share
        columns["verification_score"] = probability
        if verifier.trained_share is not None and share is not None:
            columns["copy_probability"] = np.where(exact, 1.0, rescaled(probability, verifier.trained_share, share))
        criteria[VERIFIED_EVIDENCE] = probability >= threshold  # False where screened out (NaN)
        keep = exact | criteria[VERIFIED_EVIDENCE]

    frame = pl.DataFrame(
        [pl.Series(name, [None] * len(i) if values is None else values) for name, values in columns.items()]
    )
    judged = (
        pl.concat(
            [frame, _named_flags("evidence", criteria, len(i)), _named_flags("found_by", nominations, len(i))],
            how="horizontal",
        )
        .with_columns(
            pl.col("hamming").cast(pl.Int64),
            pl.col("cosine").cast(pl.Float32),
            pl.col("verification_score").cast(pl.Float32),
            pl.col("copy_probability").cast(pl.Float32),
        )
        .filter(pl.Series(keep | everything))
    )
    return Verdicts(judged, cutoff, operating, expected)


def _operating_point(verifier: PairScorer, probability: np.ndarray, target: float) -> tuple[float, ExpectedPrecision]:
    """The verifier's threshold for the first join's candidates (``probability``, exact copies
    aside): where the flags' expected precision at the candidates' own base rate reaches
    ``target``, but never stricter than the calibrated threshold (the expectation leans
    pessimistic where real copies score lower than synthetic ones) nor looser than balanced
    precision allows; and the expected precision there."""
    loosest = verifier.loosest_threshold if verifier.loosest_threshold is not None else verifier.threshold
    reached, there = operating_point(probability, verifier.trained_share, target, loosest)
    threshold = min(verifier.threshold, reached)
    return threshold, expected_precision(probability, verifier.trained_share, threshold, there.copy_share)


def _named_flags(column: str, flags: Mapping[str, np.ndarray], rows: int) -> pl.DataFrame:
    """One text column: per row, the comma-separated names of the ``flags`` that hold."""
    if not flags:
        return pl.DataFrame({column: pl.Series([""] * rows, dtype=pl.String)})
    frame = pl.DataFrame([pl.Series(name, mask, dtype=pl.Boolean) for name, mask in flags.items()])
    return frame.select(
        pl.concat_str(
            [pl.when(pl.col(name)).then(pl.lit(name)) for name in flags], separator=",", ignore_nulls=True
        ).alias(column)
    )
