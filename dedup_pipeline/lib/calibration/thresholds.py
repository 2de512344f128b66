"""Thresholds calibrated on the dataset itself.

Fixed thresholds (Hamming 10, cosine 0.9) mean different things on 32-pixel CIFAR images and on
12-megapixel photos. Here each evidence type gets the loosest threshold that keeps a target
precision on the user's own images:

* positives: synthetic copies of sampled images (the moderate transforms in
  :data:`CALIBRATION_TRANSFORMS`), scored against their source;
* hard negatives: each sampled image's *second*-nearest image in the dataset under that evidence
  (the nearest may be a real duplicate of it; the second rarely is). When the dataset is so
  duplicated that second-nearest images are often as close as synthetic copies (more than 20% of
  the sample) and it is labelled, the nearest image *with another label* instead (duplicates
  across labels are rare). The rule and the measured share are recorded;
* precision on balanced pairs: ``tpr / (tpr + fpr)``: of the images flagged, the share that are
  copies, when every image either has a copy or does not;
* honesty: images are split in two halves by a hash of their path; thresholds are tuned on one
  half and precision and recall are reported on the other.

When several evidence types are OR-ed, each is tuned to ``1 - (1 - target) / k`` so the union
stays near the target; the union's precision and recall on the held-out half are reported too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dedup_pipeline.lib.calibration.transforms import transform_named
from dedup_pipeline.lib.features.embedding import Embedder, preferred_batch_size
from dedup_pipeline.lib.features.hashing import MIRROR_SUFFIX, batch_hashes, hash_base, mirror_key
from dedup_pipeline.lib.features.image_work import embed_in_batches, embedding_input
from dedup_pipeline.lib.features.thumbnails import THUMBNAIL_SIDE, thumbnail
from dedup_pipeline.lib.inputs.decoding import DecodeError, decode_image
from dedup_pipeline.lib.inputs.sources import local_path
from dedup_pipeline.lib.search.criteria import EMBEDDING_EVIDENCE
from dedup_pipeline.lib.search.hamming_join import (
    cross_distances,
    mirror_aware_cross_distances,
    mirror_aware_distances,
    pair_distances,
)
from dedup_pipeline.lib.verification.pair_features import ImageSignals

CALIBRATION_TRANSFORMS: tuple[str, ...] = (
    "jpeg q50",
    "jpeg q30",
    "downscale 1/2",
    "downscale 1/4",
    "gamma 0.5",
    "gamma 2.0",
    "box blur 3px",
    "crop 4px",
    "crop 16px",
    "centre crop keep 90%",
    "hflip",
    "rotate 2deg",
    "colour jitter 0.2",
    "pad 5%",
    "aspect x0.8",
    "recrop medium",
    "recrop strong",
    "watermark 30%",
    "text overlay 10%",
    "screenshot chain 2 rounds",
)


def mirror_variant(name: str) -> str:
    """Key of a hash's mirror-aware scores (smaller of direct and mirrored distance)."""
    return f"{name} mirror-aware"


def half_of(path: str) -> int:
    """0 or 1, stable across runs and machines."""
    return hashlib.blake2b(path.encode(), digest_size=1).digest()[0] & 1


def sample_ids(paths: Sequence[str], per_half: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``per_half`` image ids from each half, chosen deterministically."""
    halves = np.array([half_of(path) for path in paths], dtype=np.int8)
    rng = np.random.default_rng(seed)
    chosen = []
    for half in (0, 1):
        ids = np.flatnonzero(halves == half)
        chosen.append(np.sort(rng.choice(ids, size=min(per_half, len(ids)), replace=False)))
    return chosen[0], chosen[1]


def transforms_for(image_id: int, per_image: int) -> list[str]:
    """A deterministic subset of the calibration transforms for one image (cheaper than all)."""
    rng = np.random.default_rng(image_id)
    picks = rng.choice(len(CALIBRATION_TRANSFORMS), size=min(per_image, len(CALIBRATION_TRANSFORMS)), replace=False)
    return [CALIBRATION_TRANSFORMS[k] for k in sorted(picks)]


@dataclass(frozen=True)
class EvidenceScores:
    """Scores of one evidence type: lower is closer for Hamming distances, higher for cosine."""

    positives: np.ndarray  # source vs its synthetic copy
    negatives: np.ndarray  # source vs its hard negative (see choose_negatives)
    higher_is_closer: bool
    other_label_negatives: np.ndarray | None = None  # source vs its nearest image with another label


def nearest_hamming(
    sample: np.ndarray,
    hashes: np.ndarray,
    exclude: Sequence[np.ndarray],
    rank: int,
    mirrored: np.ndarray | None = None,
) -> np.ndarray:
    """For each sampled image, the ``rank``-th smallest (0 = smallest) Hamming distance to an image
    not in ``exclude[k]``."""
    everyone = np.arange(len(hashes))
    result = np.empty(len(sample), dtype=np.int64)
    for row, image_id in enumerate(sample):
        this = np.full(len(hashes), image_id)
        distance = (
            pair_distances(hashes, this, everyone)
            if mirrored is None
            else mirror_aware_distances(hashes, mirrored, this, everyone)
        )
        distance[exclude[row]] = np.iinfo(np.int64).max
        result[row] = np.partition(distance, rank)[rank]
    return result


def nearest_cosine(sample: np.ndarray, embeddings: np.ndarray, exclude: Sequence[np.ndarray], rank: int) -> np.ndarray:
    similarity = embeddings[sample] @ embeddings.T
    for row, excluded in enumerate(exclude):
        similarity[row, excluded] = -np.inf
    return -np.partition(-similarity, rank, axis=1)[:, rank]


HEAVY_DUPLICATION = 0.2
SECOND_NEAREST = "second-nearest image"
NEAREST_OTHER_LABEL = "nearest image with another label"


def labels_usable(labels: Sequence[str | None]) -> bool:
    """Labels on (nearly) every image, and at least two of them."""
    present = [label for label in labels if label is not None]
    return len(present) >= 0.9 * len(labels) and len(set(present)) >= 2


def copy_like_share(scores: dict[str, EvidenceScores]) -> float:
    """Share of sampled images whose second-nearest image is, on every evidence type, at least as
    close as their median synthetic copy: how often the 'negatives' are probably duplicates."""
    close = [
        within(s.negatives, float(np.median(s.positives)), s.higher_is_closer)
        for s in scores.values()
        if len(s.positives)
    ]
    return float(np.all(close, axis=0).mean()) if close else 0.0


def choose_negatives(tune: dict[str, EvidenceScores]) -> tuple[str, float]:
    """Second-nearest images are the hard negatives, unless the dataset is so duplicated that they
    are often copies themselves and labels offer a cleaner choice: the nearest image with another
    label (duplicates across labels are rare). Decided on the tuning half; returns the rule and the
    measured copy-like share."""
    share = copy_like_share(tune)
    labelled = all(s.other_label_negatives is not None for s in tune.values())
    return (NEAREST_OTHER_LABEL if share > HEAVY_DUPLICATION and labelled else SECOND_NEAREST), share


def with_negatives(scores: dict[str, EvidenceScores], rule: str) -> dict[str, EvidenceScores]:
    if rule == SECOND_NEAREST:
        return scores
    return {
        name: EvidenceScores(s.positives, s.other_label_negatives, s.higher_is_closer) for name, s in scores.items()
    }


def within(scores: np.ndarray, threshold: float, higher_is_closer: bool) -> np.ndarray:
    return scores >= threshold if higher_is_closer else scores <= threshold


def precision_recall(scores: EvidenceScores, threshold: float) -> tuple[float, float]:
    tpr = float(within(scores.positives, threshold, scores.higher_is_closer).mean()) if len(scores.positives) else 0.0
    fpr = float(within(scores.negatives, threshold, scores.higher_is_closer).mean()) if len(scores.negatives) else 0.0
    return (tpr / (tpr + fpr) if tpr + fpr else 1.0), tpr


def choose_threshold(scores: EvidenceScores, target_precision: float) -> float | None:
    """The loosest threshold whose balanced precision is >= the target (None: no threshold reaches
    it with any recall, so this evidence should not match on its own)."""
    candidates = np.unique(np.concatenate([scores.positives, scores.negatives]))
    ordered = candidates[::-1] if not scores.higher_is_closer else candidates  # loosest first
    for threshold in ordered:
        precision, recall = precision_recall(scores, float(threshold))
        if precision >= target_precision and recall > 0:
            return float(threshold)
    return None


def per_evidence_target(target_precision: float, evidence_count: int) -> float:
    return 1 - (1 - target_precision) / max(1, evidence_count)


def union_precision_recall(scores: dict[str, EvidenceScores], thresholds: dict[str, float]) -> tuple[float, float]:
    """Balanced precision and recall of the OR of several evidence types (same samples in the same
    order for every evidence type)."""
    used = [name for name, threshold in thresholds.items() if threshold is not None]
    if not used:
        return 1.0, 0.0
    hit_positive = np.any(
        [within(scores[n].positives, thresholds[n], scores[n].higher_is_closer) for n in used], axis=0
    )
    hit_negative = np.any(
        [within(scores[n].negatives, thresholds[n], scores[n].higher_is_closer) for n in used], axis=0
    )
    tpr, fpr = float(hit_positive.mean()), float(hit_negative.mean())
    return (tpr / (tpr + fpr) if tpr + fpr else 1.0), tpr


@dataclass(frozen=True)
class SyntheticCopies:
    """Transformed copies of sampled images: ``owner[k]`` is the image id copy ``k`` was made from;
    ``signals`` holds their thumbnails, hashes (with mirror hashes) and embeddings, computed
    exactly as for stored images."""

    owner: np.ndarray
    signals: ImageSignals


def synthesize_copies(
    sample: np.ndarray,
    pictures: Sequence[Image.Image],
    hash_names: Sequence[str],
    mirrored_names: Sequence[str],
    hash_size: int,
    embedder: Embedder | None,
    transforms_per_image: int,
) -> SyntheticCopies:
    """``transforms_per_image`` copies of each sampled image (``pictures[k]`` is the canonical
    decode of image ``sample[k]``)."""
    copies: list[Image.Image] = []
    owners: list[int] = []
    for image_id, picture in zip(sample.tolist(), pictures, strict=True):
        for name in transforms_for(image_id, transforms_per_image):
            copies.append(transform_named(name).apply(picture))
            owners.append(image_id)
    hashes = batch_hashes([hash_base(copy, hash_size) for copy in copies], hash_size, hash_names, mirrored_names)
    embeddings = None
    if embedder is not None:
        inputs = [embedding_input(copy, embedder.image_size) for copy in copies]
        embeddings = embed_in_batches(embedder, inputs, preferred_batch_size(embedder.image_size))
    thumbnails = (
        np.stack([thumbnail(copy) for copy in copies])
        if copies
        else np.zeros((0, THUMBNAIL_SIDE, THUMBNAIL_SIDE, 3), np.uint8)
    )
    return SyntheticCopies(np.array(owners, dtype=np.int64), ImageSignals(thumbnails, hashes, embeddings))


def score_sample(
    sample: np.ndarray,
    copies: SyntheticCopies,
    hashes: dict[str, np.ndarray],
    embeddings: np.ndarray | None,
    exact_keys: np.ndarray,
    labels: np.ndarray | None,
) -> dict[str, EvidenceScores]:
    """Positive and hard-negative scores of every evidence type for the sampled images; hashes
    stored with mirror hashes are also scored mirror-aware, under :func:`mirror_variant` keys.

    ``copies`` are synthetic copies of the sampled images; ``exact_keys`` (one per image) marks
    exact copies, which are never hard negatives. With ``labels`` (one per image), the nearest image
    with another label is scored too, for :func:`choose_negatives`.
    """
    owner = copies.owner
    exclude = [np.flatnonzero(exact_keys == exact_keys[image_id]) for image_id in sample.tolist()]
    exclude_label = (
        None
        if labels is None
        else [np.flatnonzero((exact_keys == exact_keys[k]) | (labels == labels[k])) for k in sample.tolist()]
    )

    def hash_scores(positives: np.ndarray, words: np.ndarray, mirrored: np.ndarray | None) -> EvidenceScores:
        return EvidenceScores(
            positives.astype(np.int64),
            nearest_hamming(sample, words, exclude, 1, mirrored),
            higher_is_closer=False,
            other_label_negatives=None
            if exclude_label is None
            else nearest_hamming(sample, words, exclude_label, 0, mirrored),
        )

    scores: dict[str, EvidenceScores] = {}
    copy_hashes = copies.signals.hashes
    each_copy = np.arange(len(owner))
    for name in [name for name in hashes if not name.endswith(MIRROR_SUFFIX)]:
        words, mirrored = hashes[name], hashes.get(mirror_key(name))
        scores[name] = hash_scores(cross_distances(copy_hashes[name], words, each_copy, owner), words, None)
        if mirrored is not None:
            either = mirror_aware_cross_distances(
                copy_hashes[name], copy_hashes[mirror_key(name)], words, mirrored, each_copy, owner
            )
            scores[mirror_variant(name)] = hash_scores(either, words, mirrored)
    if copies.signals.embeddings is not None and embeddings is not None and len(owner):
        positives = np.einsum("nd,nd->n", copies.signals.embeddings, embeddings[owner])
        scores[EMBEDDING_EVIDENCE] = EvidenceScores(
            positives,
            nearest_cosine(sample, embeddings, exclude, 1),
            higher_is_closer=True,
            other_label_negatives=None
            if exclude_label is None
            else nearest_cosine(sample, embeddings, exclude_label, 0),
        )
    return scores


def decode_sample(
    root: Path, paths: Sequence[str], ids: np.ndarray, max_pixels: int
) -> tuple[np.ndarray, list[Image.Image]]:
    """Decode the sampled images again (calibration needs their pixels); files that vanished or no
    longer decode since the manifest was built are left out of the sample rather than failing."""
    kept, pictures = [], []
    for image_id in ids.tolist():
        try:
            pictures.append(decode_image((root / local_path(paths[image_id])).read_bytes(), max_pixels).rgb)
        except (OSError, DecodeError):
            continue
        kept.append(image_id)
    return np.array(kept, dtype=np.int64), pictures


def recall_at_target(scores: EvidenceScores, target: float) -> float:
    threshold = choose_threshold(scores, target)
    return 0.0 if threshold is None else precision_recall(scores, threshold)[1]


def choose_mirroring(tune: dict[str, EvidenceScores], evidences: Sequence[str], target: float) -> frozenset[str]:
    """Hashes worth matching mirror-aware: those whose mirror-aware variant recalls more copies at
    the target precision (mirroring finds flipped copies but also doubles the chances of a false
    match, so on some data it costs more than it gains)."""
    per_evidence = per_evidence_target(target, len(evidences))
    return frozenset(
        name
        for name in evidences
        if mirror_variant(name) in tune
        and recall_at_target(tune[mirror_variant(name)], per_evidence) > recall_at_target(tune[name], per_evidence)
    )


def select_variants(scores: dict[str, EvidenceScores], mirrored: frozenset[str]) -> dict[str, EvidenceScores]:
    """Scores keyed by evidence, the mirror-aware variant for the hashes in ``mirrored``."""
    base = [name for name in scores if not name.endswith(" mirror-aware")]
    return {name: scores[mirror_variant(name)] if name in mirrored else scores[name] for name in base}


@dataclass(frozen=True)
class CalibratedEvidence:
    evidence: str
    threshold: float | None
    tune_precision: float
    tune_recall: float
    holdout_precision: float
    holdout_recall: float


def calibrate(
    tune: dict[str, EvidenceScores], holdout: dict[str, EvidenceScores], evidences: Sequence[str], target: float
) -> tuple[list[CalibratedEvidence], tuple[float, float]]:
    """Thresholds chosen on ``tune``, measured on ``holdout``; returns the per-evidence results
    and the held-out (precision, recall) of their union."""
    per_evidence = per_evidence_target(target, len(evidences))
    results = []
    for name in evidences:
        threshold = choose_threshold(tune[name], per_evidence)
        tuned = precision_recall(tune[name], threshold) if threshold is not None else (1.0, 0.0)
        held = precision_recall(holdout[name], threshold) if threshold is not None else (1.0, 0.0)
        results.append(CalibratedEvidence(name, threshold, *tuned, *held))
    union = union_precision_recall(holdout, {r.evidence: r.threshold for r in results})
    return results, union
