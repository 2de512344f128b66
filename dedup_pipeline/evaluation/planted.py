"""``python -m dedup_pipeline.evaluation.planted``: does precision hold at every dataset size?

CIFAR-10 subsets of several sizes, each with planted copies: the pipeline runs on each with its
defaults, and per size we report the verifier threshold calibration chose, the precision
``match_thresholds`` estimates for it, the planted copies found, and the test images flagged that
are not planted copies, with a contact sheet of those pairs.

The subsets are drawn evenly (in path order) from the CIFAR-10 images that ciFAIR's lists do not
mention, so they hold few real duplicates; each planted copy is a training image put through one of
the evaluation suite's transforms (a fixed rotation through them, not a choice) and saved into the
test split under a new name. A flagged test image that is not a planted copy is either a duplicate
that ciFAIR's lists left out or a false flag: only judging tells which, and judging must be blind
(the pairs shuffled with controls of known verdict, as ``blind_judging`` does for CIFAR-10), so the
counts are not called false here.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from PIL import Image

from dedup_pipeline.evaluation.cifar import contact_sheet, load_cifair, prepare_cifar
from dedup_pipeline.evaluation.runs import StoredRun, run_pipeline
from dedup_pipeline.lib.calibration.transforms import TRANSFORMS
from dedup_pipeline.lib.search.criteria import VERIFIED_EVIDENCE

# (train images, test images, planted copies): the sizes of the measurements, and a larger one
SIZES = ((800, 300, 40), (3_000, 1_000, 140), (15_000, 5_000, 700))
PLANTED_PREFIX = "planted-"


@dataclass(frozen=True)
class PlantedResult:
    images: int
    planted: int
    verifier_threshold: float | None
    estimated_precision: float | None
    planted_found: int
    other_test_images: int
    other_pairs: int
    seconds: float


def build_subset(cifar: Path, target: Path, sizes: tuple[int, int, int], unlisted: Sequence[str]) -> dict[str, str]:
    """``target``: the subset as symbolic links plus the planted copies; returns planted path -> source path."""
    train_count, test_count, planted_count = sizes
    train = [path for path in unlisted if path.startswith("train/")]
    test = [path for path in unlisted if path.startswith("test/")]
    chosen_train = train[:: max(1, len(train) // train_count)][:train_count]
    chosen_test = test[:: max(1, len(test) // test_count)][:test_count]
    for relative in [*chosen_train, *chosen_test]:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / relative).symlink_to((cifar / relative).resolve())
    planted = {}
    sources = chosen_train[:: max(1, len(chosen_train) // planted_count)][:planted_count]
    for index, source in enumerate(sources):
        transform = TRANSFORMS[index % len(TRANSFORMS)]
        label = source.split("/")[1]
        relative = f"test/{label}/{PLANTED_PREFIX}{index:04d}.png"
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        with Image.open(cifar / source) as image:
            transform.apply(image.convert("RGB")).save(target / relative)
        planted[relative] = source
    return planted


def measure(run: StoredRun, planted: dict[str, str]) -> tuple[PlantedResult, pl.DataFrame]:
    """The size's row, and the flagged (test, train) pairs whose test image is not planted."""
    paths = run.manifest["path"].to_numpy()
    pairs = run.pairs.select(
        pl.Series("a", paths[run.pairs["image_id_a"].to_numpy()]),
        pl.Series("b", paths[run.pairs["image_id_b"].to_numpy()]),
    )
    found = {(a, b) for a, b in pairs.rows()} | {(b, a) for a, b in pairs.rows()}
    planted_found = sum((copy, source) in found for copy, source in planted.items())
    leaks = (
        pairs.with_columns(
            pl.when(pl.col("a").str.starts_with("test/")).then(pl.col("a")).otherwise(pl.col("b")).alias("test_path"),
            pl.when(pl.col("a").str.starts_with("test/")).then(pl.col("b")).otherwise(pl.col("a")).alias("train_path"),
        )
        .filter(pl.col("test_path").str.starts_with("test/") & pl.col("train_path").str.starts_with("train/"))
        .filter(~pl.col("test_path").str.contains(PLANTED_PREFIX, literal=True))
        .select("test_path", "train_path")
        .sort("test_path", "train_path")
    )
    verifier = run.threshold_table.filter(pl.col("evidence") == VERIFIED_EVIDENCE)
    threshold = verifier["threshold"][0] if verifier.height else None
    estimate = verifier["holdout_precision"][0] if verifier.height else None
    result = PlantedResult(
        images=run.manifest.height,
        planted=len(planted),
        verifier_threshold=threshold,
        estimated_precision=estimate,
        planted_found=planted_found,
        other_test_images=leaks["test_path"].n_unique(),
        other_pairs=leaks.height,
        seconds=run.seconds,
    )
    return result, leaks


def report(results: list[PlantedResult], sheets: list[str], commit: str) -> list[str]:
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [
        "# Precision at every dataset size: CIFAR-10 subsets with planted copies",
        "",
        f"Written by `python -m dedup_pipeline.evaluation.planted` at commit {commit or 'unknown'}. "
        + (__doc__ or "").split("\n\n")[1].replace("\n", " "),
        "",
        "| images (with the planted) | planted copies | verifier threshold chosen | precision `match_thresholds` "
        "estimates | planted found | other test images flagged (pairs) | contact sheet | pipeline seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result, sheet in zip(results, sheets, strict=True):
        lines.append(
            f"| {result.images:,} | {result.planted} | {number(result.verifier_threshold)} | "
            f"{number(result.estimated_precision)} | {result.planted_found}/{result.planted} | "
            f"{result.other_test_images} ({result.other_pairs}) | [{Path(sheet).name}]({Path(sheet).name}) | "
            f"{result.seconds:.0f} |"
        )
    lines += [
        "",
        "The other test images flagged are not judged yet (blind judging needs them shuffled with controls of "
        "known verdict); each sheet shows their pairs, test left, train right, in path order.",
        "",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dedup_pipeline.evaluation.planted", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--work", type=Path, default=Path("build/eval-planted"))
    parser.add_argument("--out", type=Path, default=Path("eval"))
    args = parser.parse_args(argv)
    cifar = prepare_cifar(args.shared / "data" / "cifar10-jpeg.tar.gz", args.work / "cifar10")
    test_train, test_test = load_cifair(args.shared / "data" / "cifair")
    listed = {
        path for pairs in (test_train, test_test) for column in ("test_path", "other_path") for path in pairs[column]
    }
    unlisted = sorted(
        str(path.relative_to(cifar)) for path in cifar.rglob("*.jpg") if str(path.relative_to(cifar)) not in listed
    )
    results, sheets = [], []
    for sizes in SIZES:
        name = f"subset-{sum(sizes)}"
        data = args.work / name
        if data.exists():
            shutil.rmtree(data)  # links and planted copies only: the CIFAR files stay
        planted = build_subset(cifar, data, sizes, unlisted)
        run = run_pipeline(data, args.work / f"{name}.duckdb")
        result, leaks = measure(run, planted)
        sheet = args.out / f"planted_{name}_others.png"
        contact_sheet(data, leaks, sheet)
        results.append(result)
        sheets.append(str(sheet))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = report(results, sheets, commit)
    (args.out / "planted.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
