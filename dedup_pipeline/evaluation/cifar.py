"""CIFAR-10 against ciFAIR's human-judged duplicate lists.

A ciFAIR pair counts as found by a recipe when the recipe matches that exact (test, train) or
(test, test) pair. We also count the test images a recipe flags as having any train duplicate
(ciFAIR's people found 286, 2.9% of the test set; their lists are not exhaustive).
"""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image, ImageOps

from dedup_pipeline.evaluation.recipes import Recipe, recipe_pairs
from dedup_pipeline.evaluation.runs import StoredRun
from dedup_pipeline.lib.search.candidates import local_candidates
from dedup_pipeline.lib.search.criteria import EXACT_EVIDENCE
from dedup_pipeline.lib.search.look_alikes import fit_space, look_alike_lists
from dedup_pipeline.lib.search.pair_sets import union
from dedup_pipeline.lib.verification.judging import verifier_probability
from dedup_pipeline.lib.verification.pair_features import ImageSignals

READY_MARKER = ".extracted"


def prepare_cifar(archive: Path, target: Path) -> Path:
    """Extract the CIFAR-10 JPEG archive once (a marker file records completion)."""
    if not (target / READY_MARKER).exists():
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
        (target / READY_MARKER).touch()
    return target


@dataclass
class CifarScore:
    recipe: str
    recall_near: float  # judgment 0/1
    recall_similar: float  # judgment 2
    recall_test_test: float
    flagged_test_images: int
    flagged_pairs: np.ndarray  # (test id, train id) pairs the recipe matched


def load_cifair(folder: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    return (
        pl.read_csv(folder / "cifar10_test_train_pairs.csv"),
        pl.read_csv(folder / "cifar10_test_test_pairs.csv"),
    )


def _pair_ids(run: StoredRun, pairs: pl.DataFrame, left: str, right: str) -> np.ndarray:
    ids = dict(zip(run.manifest["path"].to_list(), run.manifest["image_id"].to_list(), strict=True))
    return np.array([sorted((ids[a], ids[b])) for a, b in pairs.select(left, right).rows()], dtype=np.int64).reshape(
        -1, 2
    )


def _found(matched: set[tuple[int, int]], wanted: np.ndarray) -> float:
    return float(np.mean([tuple(pair) in matched for pair in wanted.tolist()])) if len(wanted) else 0.0


def score_recipe(run: StoredRun, recipe: Recipe, test_train: pl.DataFrame, test_test: pl.DataFrame) -> CifarScore:
    return score_pairs(run, recipe.name, recipe_pairs(run, recipe), test_train, test_test)


@dataclass(frozen=True)
class CandidateScores:
    """Every candidate pair the verifier judges, its probability (no screen) and whether it is exact."""

    pairs: np.ndarray
    probability: np.ndarray
    exact: np.ndarray

    @property
    def score(self) -> np.ndarray:
        """Per pair: 1 for exact pairs, else the verifier's probability."""
        return np.where(self.exact, 1.0, self.probability)


def candidate_scores(run: StoredRun) -> CandidateScores | None:
    verifier = run.thresholds.verifier
    if verifier is None:
        return None
    signals = ImageSignals(run.thumbnails, run.hashes, run.embeddings)
    digests = {name: run.manifest[column].to_numpy() for name, column in EXACT_EVIDENCE.items()}
    space = run.thresholds.look_alikes or fit_space(signals.descriptors)
    candidates = union(
        local_candidates(digests, run.hashes, run.embeddings, signals.views, run.thresholds),
        look_alike_lists(space.vectors(signals.descriptors)).pairs(),
    )
    i, j = candidates[:, 0], candidates[:, 1]
    probability, _ = verifier_probability(verifier, signals, run.thresholds.mirrored, i, j)  # every pair aligned
    exact = np.zeros(len(i), dtype=bool)
    for column in EXACT_EVIDENCE.values():
        values = run.manifest[column].to_numpy()
        exact |= values[i] == values[j]
    return CandidateScores(candidates, np.nan_to_num(probability, nan=0.0), exact)


def verifier_operating_points(
    run: StoredRun,
    scores: CandidateScores,
    probabilities: Sequence[float],
    test_train: pl.DataFrame,
    test_test: pl.DataFrame,
) -> list[CifarScore]:
    """The run's trained verifier at other probability thresholds, on the same candidates: the
    recall / flagged trade-off the calibrated threshold picks one point of."""
    return [
        score_pairs(
            run,
            f"verifier, probability >= {p:.3f}",
            scores.pairs[scores.exact | (scores.probability >= p)],
            test_train,
            test_test,
        )
        for p in probabilities
    ]


def best_partners(manifest: pl.DataFrame, scores: CandidateScores) -> pl.DataFrame:
    """Every test image with a train candidate, ranked by its best-scoring train partner (exact pairs
    score 1): test_path, train_path, score, rank (0 = most likely leaked)."""
    split = manifest["split"].to_numpy()
    paths = manifest["path"].to_numpy()
    i, j = scores.pairs[:, 0], scores.pairs[:, 1]
    cross = split[i] != split[j]
    test_first = split[i] == "test"
    return (
        pl.DataFrame(
            {
                "test_path": paths[np.where(test_first, i, j)[cross]],
                "train_path": paths[np.where(test_first, j, i)[cross]],
                "score": scores.score[cross],
            }
        )
        .sort(["score", "train_path"], descending=[True, False])
        .unique("test_path", keep="first", maintain_order=True)
        .with_columns(pl.int_range(pl.len()).alias("rank"))
    )


def at_flagged_counts(
    run: StoredRun, scores: CandidateScores, counts: Sequence[int], test_train: pl.DataFrame, test_test: pl.DataFrame
) -> list[CifarScore]:
    """The verifier's threshold set so that it flags (about) ``counts`` test images: the ranking's
    quality, free of where calibration put the threshold."""
    ranked = best_partners(run.manifest, scores).filter(pl.col("score") > 0)["score"].to_numpy()
    results = []
    for count in counts:
        cut = ranked[min(count, len(ranked)) - 1] if len(ranked) else 1.0
        results.append(
            score_pairs(run, f"flag the top {count}", scores.pairs[scores.score >= cut], test_train, test_test)
        )
    return results


def score_pairs(
    run: StoredRun, name: str, pairs: np.ndarray, test_train: pl.DataFrame, test_test: pl.DataFrame
) -> CifarScore:
    matched = {tuple(pair) for pair in pairs.tolist()}
    split = run.manifest["split"].to_numpy()
    cross = pairs[split[pairs[:, 0]] != split[pairs[:, 1]]]
    test_side = np.where(split[cross[:, 0]] == "test", cross[:, 0], cross[:, 1])
    train_side = np.where(split[cross[:, 0]] == "test", cross[:, 1], cross[:, 0])
    near = test_train.filter(pl.col("judgment") <= 1)
    similar = test_train.filter(pl.col("judgment") == 2)
    return CifarScore(
        recipe=name,
        recall_near=_found(matched, _pair_ids(run, near, "test_path", "other_path")),
        recall_similar=_found(matched, _pair_ids(run, similar, "test_path", "other_path")),
        recall_test_test=_found(matched, _pair_ids(run, test_test, "test_path", "other_path")),
        flagged_test_images=len(np.unique(test_side)),
        flagged_pairs=np.stack([test_side, train_side], axis=1),
    )


def flagged_paths(run: StoredRun, score: CifarScore) -> pl.DataFrame:
    """A recipe's flagged (test, train) pairs as paths."""
    paths = run.manifest["path"].to_numpy()
    return pl.DataFrame({"test_path": paths[score.flagged_pairs[:, 0]], "train_path": paths[score.flagged_pairs[:, 1]]})


def flagged_outside_cifair(run: StoredRun, score: CifarScore, test_train: pl.DataFrame) -> pl.DataFrame:
    """Flagged (test, train) pairs whose test image ciFAIR does not list: to inspect, not to call false."""
    listed = set(test_train["test_path"].to_list())
    return (
        flagged_paths(run, score)
        .filter(~pl.col("test_path").is_in(listed))
        .unique("test_path", keep="first")
        .sort("test_path")
    )


def enlarged(path: Path, size: int, mirror: bool = False) -> Image.Image:
    """The picture at ``path`` as RGB, ``size`` pixels square (nearest neighbour: pixels stay visible)."""
    with Image.open(path) as image:
        picture = image.convert("RGB").resize((size, size), Image.Resampling.NEAREST)
    return ImageOps.mirror(picture) if mirror else picture


def contact_sheet(root: Path, pairs: pl.DataFrame, target: Path, scale: int = 3) -> None:
    """Pairs side by side (test left, train right), upscaled, one pair per cell, 4 pairs a row."""
    cell = 32 * scale
    columns = 4
    rows = max(1, -(-pairs.height // columns))
    sheet = Image.new("RGB", (columns * (2 * cell + 12), rows * (cell + 8)), "white")
    for index, (test_path, train_path) in enumerate(pairs.select("test_path", "train_path").rows()):
        x, y = (index % columns) * (2 * cell + 12), (index // columns) * (cell + 8)
        for offset, path in ((0, test_path), (cell, train_path)):
            sheet.paste(enlarged(root / path, cell), (x + offset, y))
    target.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(target)
