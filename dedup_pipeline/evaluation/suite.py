"""The transformation suite: distinct source pictures, each with a copy per transform.

The suite is a dataset folder ``<root>/suite/<source>/<transform>.png`` (the label is the source),
run through the real pipeline. Positives are pairs of images from the same source; negatives are
pairs from different sources. Per transform we report the share of sources whose (original, copy)
pair a recipe finds; over the suite, each recipe's precision and false-positive rate.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from dedup_pipeline.evaluation.recipes import Recipe, recipe_pairs
from dedup_pipeline.evaluation.runs import StoredRun
from dedup_pipeline.lib.calibration.transforms import SUITE_TRANSFORMS, Transform
from dedup_pipeline.lib.features.hashing import mirror_key
from dedup_pipeline.lib.search.cosine_join import cosine_pairs
from dedup_pipeline.lib.search.criteria import EMBEDDING_EVIDENCE
from dedup_pipeline.lib.search.hamming_join import hamming_pairs, mirror_aware_pairs

ORIGINAL = "original"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def build_suite(
    root: Path, sources: Sequence[tuple[str, Image.Image]], transforms: Sequence[Transform] = SUITE_TRANSFORMS
) -> None:
    if root.exists():
        shutil.rmtree(root)
    for source_id, picture in sources:
        folder = root / "suite" / source_id
        folder.mkdir(parents=True)
        picture.save(folder / f"{ORIGINAL}.png", compress_level=1)
        for transform in transforms:
            transform.apply(picture).save(folder / f"{slug(transform.name)}.png", compress_level=1)


@dataclass
class SuiteScore:
    recipe: str
    recall_by_transform: dict[str, float]
    recall: float
    precision: float
    false_positive_rate: float
    flagged_pairs: int


def _labels(run: StoredRun) -> tuple[np.ndarray, np.ndarray]:
    source = run.manifest["label"].to_numpy()
    variant = run.manifest["path"].str.extract(r"/([^/]+)\.png$").to_numpy()
    return source, variant


def score_pairs(run: StoredRun, pairs: np.ndarray, recipe: str) -> SuiteScore:
    source, variant = _labels(run)
    same = source[pairs[:, 0]] == source[pairs[:, 1]]
    sources = np.unique(source)
    per_source = pl.DataFrame({"source": source}).group_by("source").len()["len"].to_numpy()
    positives = int((per_source * (per_source - 1) // 2).sum())
    negatives = len(source) * (len(source) - 1) // 2 - positives
    # (original, copy) pairs found, per transform
    a, b = pairs[same, 0], pairs[same, 1]
    with_original = np.concatenate([b[variant[a] == ORIGINAL], a[variant[b] == ORIGINAL]])
    found = pl.DataFrame({"variant": variant[with_original]}).group_by("variant").len()
    found_by_variant = dict(found.iter_rows())
    recall_by_transform = {
        transform.name: found_by_variant.get(slug(transform.name), 0) / len(sources) for transform in SUITE_TRANSFORMS
    }
    flagged = len(pairs)
    return SuiteScore(
        recipe=recipe,
        recall_by_transform=recall_by_transform,
        recall=float(np.mean(list(recall_by_transform.values()))),
        precision=float(same.sum() / flagged) if flagged else 1.0,
        false_positive_rate=float((~same).sum() / negatives) if negatives else 0.0,
        flagged_pairs=flagged,
    )


def score_recipe(run: StoredRun, recipe: Recipe) -> SuiteScore:
    return score_pairs(run, recipe_pairs(run, recipe), recipe.name)


@dataclass
class SweepPoint:
    evidence: str
    threshold: float
    recall: float
    precision: float


def best_at_precision(run: StoredRun, evidence: str, target: float) -> SweepPoint | None:
    """The loosest threshold of one evidence type whose suite precision is >= ``target``."""
    if evidence == EMBEDDING_EVIDENCE:
        if run.embeddings is None:
            return None
        i, j, similarity = cosine_pairs(run.embeddings, 0.5)
        candidates = [round(t, 3) for t in np.arange(0.5, 1.0, 0.01)]
        keep_for = [(t, similarity >= t) for t in candidates]
    else:
        mirrored = run.hashes.get(mirror_key(evidence))
        if mirrored is None:
            i, j, distance = hamming_pairs(run.hashes[evidence], 24)
        else:
            i, j, distance = mirror_aware_pairs(run.hashes[evidence], mirrored, 24)
        keep_for = [(t, distance <= t) for t in range(24, -1, -1)]
    pairs = np.stack([i, j], axis=1)
    for threshold, keep in keep_for:  # loosest first
        score = score_pairs(run, pairs[keep], evidence)
        if score.precision >= target:
            return SweepPoint(evidence, threshold, score.recall, score.precision)
    return None
