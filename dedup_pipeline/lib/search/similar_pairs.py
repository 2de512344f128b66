"""Similar pairs, each pair once with all its distances.

Candidates come from identical file bytes, identical decoded pixels, a Hamming join per
configured hash, and a cosine join on embeddings. Every candidate pair then gets every distance
(not only the one that found it), so a reader can see how strong the case is on each criterion.

Without a trained verifier, a candidate is a duplicate when any criterion holds. With one (see
``verification``), each image's nearest look-alikes and the pairs a geometric view of one image
matches (``views``: crops, pads, rotations) join the candidates and the verifier is the
judge: a pair is a duplicate when it is an exact copy or the verifier's probability reaches its
threshold; the other criteria stay in ``evidence`` as supporting facts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from dedup_pipeline.lib.features.hashing import MIRROR_SUFFIX, mirror_key
from dedup_pipeline.lib.features.views import pair_views, view_pairs
from dedup_pipeline.lib.search.approximate_cosine_join import cosine_range_join
from dedup_pipeline.lib.search.cosine_join import nearest_neighbour_pairs, pair_similarities
from dedup_pipeline.lib.search.hamming_join import (
    hamming_pairs,
    mirror_aware_distances,
    mirror_aware_pairs,
    pair_distances,
)
from dedup_pipeline.lib.verification.pair_features import (
    CANDIDATE_NEIGHBOURS,
    VIEW_DISTANCE,
    ImageSignals,
    scorer_inputs,
    screen_features,
    with_pixel_features,
)
from dedup_pipeline.lib.verification.pair_scorer import PairScorer

EXACT_EVIDENCE = {"content": "content_sha256", "pixels": "pixel_sha256"}
EMBEDDING_EVIDENCE = "embedding"
VERIFIED_EVIDENCE = "verified"
# The verifier aligns every candidate when there are at most ALIGNED_PAIRS_MIN, or ALIGNED_PER_IMAGE
# per image if more; beyond that, its screen picks which (aligning a pair takes about 0.25 ms on 2 cores)
ALIGNED_PAIRS_MIN = 20_000
ALIGNED_PER_IMAGE = 0.25


@dataclass(frozen=True)
class MatchThresholds:
    """A pair matches when any configured criterion holds.

    ``hamming`` maps a hash algorithm to its largest accepted distance (inclusive); ``cosine`` is
    the smallest accepted embedding similarity (inclusive), or None to not match on embeddings;
    hashes in ``mirrored`` count the smaller of the direct and the mirrored distance. With a
    ``verifier``, the verifier decides instead (the thresholds then only nominate candidates).
    """

    hamming: Mapping[str, int] = field(default_factory=dict)
    cosine: float | None = None
    mirrored: frozenset[str] = frozenset()  # hashes that also match the mirrored picture
    verifier: PairScorer | None = None

    def mirror_hashes(self, algorithm: str, hashes: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """The mirrored-picture hashes to match ``algorithm`` with, if it matches mirror-aware."""
        return hashes.get(mirror_key(algorithm)) if algorithm in self.mirrored else None


def exact_pairs(manifest: pl.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``i < j`` with equal values in ``column`` (a digest)."""
    keyed = manifest.select(pl.col("image_id"), pl.col(column).alias("key"))
    joined = keyed.join(keyed, on="key", suffix="_b").filter(pl.col("image_id") < pl.col("image_id_b"))
    return joined["image_id"].to_numpy(), joined["image_id_b"].to_numpy()


def candidate_pairs(
    manifest: pl.DataFrame,
    hashes: Mapping[str, np.ndarray],
    embeddings: np.ndarray | None,
    thresholds: MatchThresholds,
    exact: bool = True,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """Unique pairs ``(i, j)``, ``i < j``, that any criterion matches, as an (n, 2) array sorted by
    ``(i, j)``, and the cosine join's own ``(i, j, similarity)`` when it ran. ``exact`` adds pairs
    with identical file bytes or decoded pixels."""
    found = [np.zeros((0, 2), dtype=np.int64)]
    if exact:
        found += [np.stack(exact_pairs(manifest, column), axis=1) for column in EXACT_EVIDENCE.values()]
    for algorithm, limit in thresholds.hamming.items():
        mirrored = thresholds.mirror_hashes(algorithm, hashes)
        if mirrored is None:
            i, j, _ = hamming_pairs(hashes[algorithm], limit)
        else:
            i, j, _ = mirror_aware_pairs(hashes[algorithm], mirrored, limit)
        found.append(np.stack([i, j], axis=1))
    cosine_found = None
    if thresholds.cosine is not None and embeddings is not None:
        cosine_found = cosine_range_join(embeddings, thresholds.cosine)
        found.append(np.stack(cosine_found[:2], axis=1))
    return np.unique(np.concatenate(found).astype(np.int64), axis=0), cosine_found


def with_look_alikes(pairs: np.ndarray, signals: ImageSignals) -> np.ndarray:
    """``pairs`` (an (n, 2) array, ``i < j``), each image's nearest look-alikes by thumbnail
    descriptor and the pairs a geometric view matches (``views``), unique and sorted."""
    look_alikes = nearest_neighbour_pairs(signals.descriptors, CANDIDATE_NEIGHBOURS)
    return np.unique(np.concatenate([pairs, look_alikes, view_pairs(signals.views)]), axis=0)


def verifier_probability(
    verifier: PairScorer,
    signals: ImageSignals,
    mirrored: frozenset[str],
    i: np.ndarray,
    j: np.ndarray,
    always: np.ndarray | None = None,
    screen: bool = True,
) -> np.ndarray:
    """The verifier's probability that each pair ``(i[k], j[k])`` is a copy: NaN where its screen
    rejected the pair without aligning it (pairs in ``always`` are scored regardless; ``screen``
    False scores every pair). See :func:`screened` for which pairs the screen passes."""
    if VIEW_DISTANCE not in verifier.features:
        raise ValueError("the stored pair verifier predates geometric views: materialize match_thresholds again")
    hash_names, _ = scorer_inputs(verifier.features)
    views = pair_views(signals.views, i, j)
    screen_input = screen_features(signals, i, j, hash_names, mirrored, views)
    budget = max(ALIGNED_PAIRS_MIN, int(ALIGNED_PER_IMAGE * len(signals.thumbnails)))
    passed = np.ones(len(i), dtype=bool)
    if screen and verifier.screen is not None and len(i) > budget:
        passed = screened(verifier.screen.probability(screen_input), verifier.screen.threshold, budget)
        if always is not None:
            passed |= always
    probability = np.full(len(i), np.nan)
    probability[passed] = verifier.probability(
        with_pixel_features(signals.thumbnails, i[passed], j[passed], screen_input[passed], views.selected(passed))
    )
    return probability


def screened(probability: np.ndarray, threshold: float, budget: int) -> np.ndarray:
    """Which candidates to align, from the screen's probability: those at or above its threshold
    and the ``budget`` most probable. The threshold passes 99.5% of the synthetic copies the
    verifier accepts, but real near-duplicates (other crops and processing of one shot) score lower
    on the cheap features: on 20,000 CIFAR-10 images it passed 294 of the 392 pairs the verifier
    accepts when it aligns every candidate, while the screen's 5,000 most probable candidates (of
    172,117) held 390 of them. Its ranking is good where its threshold is not."""
    passed = probability >= threshold
    if budget >= len(probability):
        passed[:] = True
    elif budget > 0:
        passed[np.argpartition(-probability, budget - 1)[:budget]] = True
    return passed


def find_similar_pairs(
    manifest: pl.DataFrame,
    hashes: Mapping[str, np.ndarray],
    embeddings: np.ndarray | None,
    thresholds: MatchThresholds,
    thumbnails: np.ndarray | None = None,
    view_hashes: np.ndarray | None = None,
) -> pl.DataFrame:
    """One row per matching unordered pair ``image_id_a < image_id_b``, sorted.

    Columns: ``content_equal``, ``pixels_equal``, one distance column per computed hash (the
    smaller of the direct and the mirrored distance for hashes matched mirror-aware),
    ``hamming`` (smallest distance over the configured hashes), ``cosine``,
    ``verification_score`` (the verifier's probability; null without a verifier) and
    ``evidence`` (comma-separated criteria that hold, in a fixed order). ``thumbnails`` are
    required when ``thresholds`` has a verifier (their ``view_hashes`` are computed when not given).
    """
    pairs, cosine_found = candidate_pairs(manifest, hashes, embeddings, thresholds)
    verifier = thresholds.verifier
    if verifier is not None:
        if thumbnails is None:
            raise ValueError("the verifier needs the images' thumbnails")
        signals = ImageSignals(thumbnails, hashes, embeddings, views=view_hashes)
        pairs = with_look_alikes(pairs, signals)
    i, j = pairs[:, 0], pairs[:, 1]

    columns: dict[str, object] = {"image_id_a": i, "image_id_b": j}
    criteria: dict[str, np.ndarray] = {}
    for name, column in EXACT_EVIDENCE.items():
        values = manifest[column].to_numpy()
        columns[f"{name}_equal"] = criteria[name] = values[i] == values[j]
    for algorithm, words in hashes.items():
        if algorithm.endswith(MIRROR_SUFFIX):
            continue
        mirrored = thresholds.mirror_hashes(algorithm, hashes)
        distances = pair_distances(words, i, j) if mirrored is None else mirror_aware_distances(words, mirrored, i, j)
        columns[algorithm] = distances
        if algorithm in thresholds.hamming:
            criteria[algorithm] = distances <= thresholds.hamming[algorithm]
    configured = [columns[algorithm] for algorithm in thresholds.hamming]
    columns["hamming"] = np.min(np.stack(configured), axis=0) if configured else None
    columns["cosine"] = None
    if embeddings is not None:
        columns["cosine"] = similarity = pair_similarities(embeddings, i, j)
    if cosine_found is not None:
        # The join's own values for the pairs it found: a recomputed dot product can differ in
        # the last float bit and put a pair found at the threshold just below it.
        found_i, found_j, found_similarity = cosine_found
        width = max(len(manifest), 1)
        position = np.searchsorted(i * width + j, found_i * width + found_j)
        similarity[position] = found_similarity
        criteria[EMBEDDING_EVIDENCE] = np.zeros(len(i), dtype=bool)
        criteria[EMBEDDING_EVIDENCE][position] = True
    columns["verification_score"] = None
    keep = np.ones(len(i), dtype=bool)
    if verifier is not None:
        exact = criteria["content"] | criteria["pixels"]
        columns["verification_score"] = score = verifier_probability(
            verifier, signals, thresholds.mirrored, i, j, always=exact
        )
        criteria[VERIFIED_EVIDENCE] = score >= verifier.threshold  # False where screened out (NaN)
        keep = exact | criteria[VERIFIED_EVIDENCE]

    frame = pl.DataFrame(
        [pl.Series(name, [None] * len(i) if values is None else values) for name, values in columns.items()]
    )
    flags = pl.DataFrame([pl.Series(name, mask, dtype=pl.Boolean) for name, mask in criteria.items()])
    evidence = flags.select(
        pl.concat_str(
            [pl.when(pl.col(name)).then(pl.lit(name)) for name in criteria], separator=",", ignore_nulls=True
        ).alias("evidence")
    )
    return (
        pl.concat([frame, evidence], how="horizontal")
        .with_columns(
            pl.col("hamming").cast(pl.Int64),
            pl.col("cosine").cast(pl.Float32),
            pl.col("verification_score").cast(pl.Float32),
        )
        .filter(pl.Series(keep))
    )


def directed_pairs(pairs: pl.DataFrame) -> pl.DataFrame:
    """Each unordered pair as two rows ``(image_id, partner_id)``."""
    forward = pairs.select(pl.col("image_id_a").alias("image_id"), pl.col("image_id_b").alias("partner_id"))
    backward = pairs.select(pl.col("image_id_b").alias("image_id"), pl.col("image_id_a").alias("partner_id"))
    return pl.concat([forward, backward])
