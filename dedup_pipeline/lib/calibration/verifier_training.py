"""Training the pair verifier on the dataset's own images, and choosing its threshold.

The verifier judges candidate pairs: each image's nearest look-alikes by thumbnail descriptor
(``LOOK_ALIKES`` of them, in the frozen ``look_alikes`` space), the pairs a geometric view matches and the pairs the
calibrated thresholds match. It is trained on what it will see, from the sampled images of the
tuning half (an image's "look-alikes" below include up to ``LOOK_ALIKES`` images that one
of its views matches, closest first):

* positives: each synthetic copy against the image it was made from;
* negatives: each copy against its other look-alikes, except exact copies of its source, the
  source's own nearest look-alike (it may be a real duplicate) or, under the "nearest image with
  another label" rule of heavily duplicated data, look-alikes with the source's label; and
  against ``RANDOM_NEGATIVES`` images drawn at random. Look-alikes teach the hard cases; the random
  ones cover the rest of the space the candidates come from (hash thresholds also nominate pairs
  that look nothing alike), so the model is not extrapolating there.

The threshold starts from the loosest probability whose balanced precision (as for the other
evidence) is at least the target, chosen on out-of-fold scores of the tuning half (two folds of
sampled images), and is then made as strict as ``RECALL_BUDGET`` of the copies allows (see
:func:`recall_budget_threshold`); precision and recall are then measured on the held-out half with the
model fit on the whole tuning half. A copy whose source is neither among its look-alikes nor matched by a geometric view
(``views``) counts as missed: the estimate includes the candidate stage's misses.

The screen (a model on the cheap features) is fit on the same pairs; its threshold passes all but
``SCREEN_LOSS`` of the tuning copies the verifier accepts out of fold, itself judged out of fold.
The held-out estimates apply the screen too, so they include what it loses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dedup_pipeline.lib.calibration.thresholds import (
    NEAREST_OTHER_LABEL,
    EvidenceScores,
    SyntheticCopies,
    choose_threshold,
    precision_recall,
)
from dedup_pipeline.lib.features.views import nominated, view_matches
from dedup_pipeline.lib.search.look_alikes import LOOK_ALIKES, LookAlikeSpace, nearest
from dedup_pipeline.lib.verification.base_rate import training_share
from dedup_pipeline.lib.verification.pair_features import (
    ImageSignals,
    feature_names,
    pair_features,
    screen_feature_names,
)
from dedup_pipeline.lib.verification.pair_scorer import PairScorer, fit_scorer

RANDOM_NEGATIVES = 4  # per synthetic copy
SCREEN_LOSS = 0.005  # share of accepted copies the screen may reject
RECALL_BUDGET = 0.02  # share of the copies the balanced threshold accepts that precision may cost


def recall_budget_threshold(positives: np.ndarray, balanced: float, budget: float = RECALL_BUDGET) -> float:
    """The strictest probability that still accepts all but ``budget`` (a share of the copies) of
    the copies ``balanced`` accepts, and never looser than ``balanced``.

    Balanced precision weighs one negative per copy, but the join judges about ten look-alikes per
    image and only a few images have a copy, so a false-accept rate that is invisible there gives
    many false pairs in the join (on 4,140 CIFAR-10 images the balanced threshold was 0.003, and 9
    in 10 of the flags that were not planted copies showed a different picture). The negatives at
    hand cannot measure the rates that matter there (about 1 in 10,000 candidates: fewer than one
    among the sample's, and real duplicates among unlabelled look-alikes outnumber them), while the
    rate only falls as the threshold rises. So precision is bought with a fixed, small share of
    the copies the verifier would otherwise accept."""
    accepted = np.sort(positives[positives >= balanced])[::-1]
    if not len(accepted):
        return float(balanced)
    keep = max(1, int(np.ceil((1 - budget) * len(accepted))))
    return float(max(balanced, accepted[keep - 1]))


def with_view_matches(look_alike_ids: np.ndarray, matches: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """Per query row, its look-alikes followed by up to ``LOOK_ALIKES`` other images a
    geometric view matches (``matches`` from :func:`view_matches`), closest first: the
    candidates the pipeline would judge for it."""
    pairs, distances = matches
    pairs = pairs[np.lexsort((distances, pairs[:, 0]))]
    starts = np.searchsorted(pairs[:, 0], np.arange(len(look_alike_ids) + 1))
    candidates = []
    for row, listed in enumerate(look_alike_ids):
        alikes = listed[listed >= 0]  # lists are padded with -1 when the dataset is small
        matched = pairs[starts[row] : starts[row + 1], 1]
        candidates.append(np.concatenate([alikes, matched[~np.isin(matched, alikes)][:LOOK_ALIKES]]))
    return candidates


@dataclass(frozen=True)
class HalfPairs:
    """Labelled pairs of one half, in the ids of ``signals.appended(copies.signals)``."""

    copy_pairs: np.ndarray  # (n, 2): copy id, dataset image id
    copy_labels: np.ndarray  # True where the image is the copy's source
    copy_random: np.ndarray  # True where the image was drawn at random (not a candidate of the copy)
    copy_fold: np.ndarray  # fold of the copy's source (0 or 1)
    positive_found: np.ndarray  # per copy: its source is among its look-alikes
    original_pairs: np.ndarray  # (m, 2): sampled image, a negative look-alike of it
    original_rank: np.ndarray  # per original pair: which sampled image (row in the sample)
    original_fold: np.ndarray
    skip_nearest: bool  # second-nearest rule: an image's nearest look-alike is not a negative


def half_pairs(
    sample: np.ndarray,
    copies: SyntheticCopies,
    signals: ImageSignals,
    exact_keys: np.ndarray,
    labels: np.ndarray | None,
    rule: str,
    space: LookAlikeSpace,
) -> HalfPairs:
    count = len(signals)
    other_label_only = rule == NEAREST_OTHER_LABEL and labels is not None
    position = {image_id: row for row, image_id in enumerate(sample.tolist())}
    fold_of_row = np.arange(len(sample)) % 2

    def negative(source: int, candidates: np.ndarray) -> np.ndarray:
        keep = (candidates != source) & (exact_keys[candidates] != exact_keys[source])
        if other_label_only:
            keep &= labels[candidates] != labels[source]
        return keep

    vectors = space.vectors(signals.descriptors)
    originals = with_view_matches(
        nearest(vectors[sample], vectors, LOOK_ALIKES, sample).neighbours,
        view_matches(signals.views[sample], signals.views),
    )
    original_rows, original_candidates = [], []
    nearest_of: dict[int, int] = {}
    for row, image_id in enumerate(sample.tolist()):
        candidates = originals[row][negative(image_id, originals[row])]
        if len(candidates):
            nearest_of[image_id] = int(candidates[0])
        original_rows.append(np.full(len(candidates), row))
        original_candidates.append(candidates)
    original_rank = np.concatenate(original_rows).astype(np.int64) if original_rows else np.zeros(0, np.int64)
    original_targets = np.concatenate(original_candidates) if original_candidates else np.zeros(0, np.int64)

    neighbours = with_view_matches(
        nearest(space.vectors(copies.signals.descriptors), vectors, LOOK_ALIKES).neighbours,
        view_matches(copies.signals.views, signals.views),
    )
    by_view = nominated(copies.signals.views, signals.views[copies.owner])
    random_ids = np.random.default_rng(len(sample)).integers(0, count, size=(len(neighbours), RANDOM_NEGATIVES))
    pairs, pair_labels, drawn_at_random, folds, found = [], [], [], [], []
    for k, (source, candidates) in enumerate(zip(copies.owner.tolist(), neighbours, strict=True)):
        keep = negative(source, candidates)
        if not other_label_only and source in nearest_of:
            keep &= candidates != nearest_of[source]
        drawn = np.setdiff1d(random_ids[k], candidates)
        chosen = np.concatenate([[source], candidates[keep], drawn[negative(source, drawn)]])
        pairs.append(np.stack([np.full(len(chosen), count + k), chosen], axis=1))
        pair_labels.append(np.arange(len(chosen)) == 0)
        drawn_at_random.append(np.arange(len(chosen)) > keep.sum())
        folds.append(np.full(len(chosen), fold_of_row[position[source]]))
        found.append(bool(np.any(candidates == source) or by_view[k]))
    return HalfPairs(
        copy_pairs=np.concatenate(pairs).astype(np.int64) if pairs else np.zeros((0, 2), np.int64),
        copy_labels=np.concatenate(pair_labels) if pair_labels else np.zeros(0, bool),
        copy_random=np.concatenate(drawn_at_random) if drawn_at_random else np.zeros(0, bool),
        copy_fold=np.concatenate(folds) if folds else np.zeros(0, np.int64),
        positive_found=np.array(found, dtype=bool),
        original_pairs=np.stack([sample[original_rank], original_targets], axis=1).astype(np.int64),
        original_rank=original_rank,
        original_fold=fold_of_row[original_rank] if len(original_rank) else np.zeros(0, np.int64),
        skip_nearest=not other_label_only,
    )


def half_scores(
    pairs: HalfPairs, copy_probability: np.ndarray, original_probability: np.ndarray, sampled: int
) -> EvidenceScores:
    """Positives: each copy's probability against its source (0 when the source is not among its
    look-alikes). Negatives: per sampled image, its best negative look-alike's probability, or the
    second best under the second-nearest rule."""
    positives = copy_probability[pairs.copy_labels] * pairs.positive_found
    rank = 1 if pairs.skip_nearest else 0
    negatives = np.zeros(sampled)
    for row in range(sampled):
        values = np.sort(original_probability[pairs.original_rank == row])[::-1]
        negatives[row] = values[rank] if len(values) > rank else 0.0
    return EvidenceScores(positives, negatives, higher_is_closer=True)


@dataclass(frozen=True)
class VerifierCalibration:
    scorer: PairScorer  # with its chosen threshold
    balanced_threshold: float  # where balanced precision reaches the target (the threshold starts there)
    tune_precision: float
    tune_recall: float
    holdout_precision: float
    holdout_recall: float


def calibrate_verifier(
    signals: ImageSignals,
    tune: tuple[np.ndarray, SyntheticCopies],
    holdout: tuple[np.ndarray, SyntheticCopies],
    exact_keys: np.ndarray,
    labels: np.ndarray | None,
    rule: str,
    hash_names: Sequence[str],
    mirrored: frozenset[str],
    target_precision: float,
    space: LookAlikeSpace,
) -> VerifierCalibration | None:
    """Train on the tuning half's sample, threshold on its out-of-fold scores, measure on the
    held-out half. None when no threshold reaches the target precision."""
    names = feature_names(hash_names, signals.embeddings is not None)

    def prepared(half: tuple[np.ndarray, SyntheticCopies]) -> tuple[HalfPairs, np.ndarray, np.ndarray, int]:
        sample, copies = half
        pairs = half_pairs(sample, copies, signals, exact_keys, labels, rule, space)
        extended = signals.appended(copies.signals)

        def features(ids: np.ndarray) -> np.ndarray:
            return pair_features(extended, ids[:, 0], ids[:, 1], hash_names, mirrored)

        return pairs, features(pairs.copy_pairs), features(pairs.original_pairs), len(sample)

    tune_pairs, tune_copy_features, tune_original_features, tune_count = prepared(tune)
    if tune_pairs.copy_labels.sum() == 0 or tune_pairs.copy_labels.all():
        return None
    screen_names = screen_feature_names(hash_names, signals.embeddings is not None)
    screen_columns = [names.index(name) for name in screen_names]
    copy_oof = np.zeros(len(tune_copy_features))
    screen_oof = np.zeros(len(tune_copy_features))
    original_oof = np.zeros(len(tune_original_features))
    for fold in (0, 1):
        train = tune_pairs.copy_fold != fold
        labels_in_fold = tune_pairs.copy_labels[train]
        if labels_in_fold.all() or not labels_in_fold.any():
            return None
        model = fit_scorer(names, tune_copy_features[train], labels_in_fold)
        copy_oof[~train] = model.probability(tune_copy_features[~train])
        held = tune_pairs.original_fold == fold
        original_oof[held] = model.probability(tune_original_features[held])
        screen = fit_scorer(screen_names, tune_copy_features[train][:, screen_columns], labels_in_fold)
        screen_oof[~train] = screen.probability(tune_copy_features[~train][:, screen_columns])
    tune_scores = half_scores(tune_pairs, copy_oof, original_oof, tune_count)
    balanced = choose_threshold(tune_scores, target_precision)
    if balanced is None:
        return None
    threshold = recall_budget_threshold(tune_scores.positives, balanced)
    look_alike_negatives = int((~tune_pairs.copy_labels & ~tune_pairs.copy_random).sum())
    scorer = (
        fit_scorer(names, tune_copy_features, tune_pairs.copy_labels)
        .with_threshold(threshold)
        .with_base_rate(training_share(int(tune_pairs.copy_labels.sum()), look_alike_negatives), balanced)
    )
    accepted = np.sort(screen_oof[tune_pairs.copy_labels & (copy_oof >= threshold)])
    if len(accepted):
        screen = fit_scorer(screen_names, tune_copy_features[:, screen_columns], tune_pairs.copy_labels)
        scorer = scorer.with_screen(screen.with_threshold(accepted[int(SCREEN_LOSS * len(accepted))]))

    holdout_pairs, holdout_copy_features, holdout_original_features, holdout_count = prepared(holdout)

    def screened_probability(features: np.ndarray) -> np.ndarray:
        probability = scorer.probability(features)
        if scorer.screen is not None:
            rejected = scorer.screen.probability(features[:, screen_columns]) < scorer.screen.threshold
            probability[rejected] = 0.0
        return probability

    holdout_scores = half_scores(
        holdout_pairs,
        screened_probability(holdout_copy_features),
        screened_probability(holdout_original_features),
        holdout_count,
    )
    return VerifierCalibration(
        scorer,
        balanced,
        *precision_recall(tune_scores, threshold),
        *precision_recall(holdout_scores, threshold),
    )
