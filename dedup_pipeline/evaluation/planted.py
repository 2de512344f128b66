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

from dedup_pipeline.defs.resources import DedupConfig
from dedup_pipeline.evaluation.blind_judging import (
    CONTROL_SAME_SHOT,
    CONTROL_SIMILAR,
    judge_columns,
    same_shot_share,
    write_kit,
)
from dedup_pipeline.evaluation.cifar import contact_sheet, load_cifair, prepare_cifar
from dedup_pipeline.evaluation.runs import StoredRun, load_run, run_pipeline
from dedup_pipeline.lib.calibration.transforms import TRANSFORMS
from dedup_pipeline.lib.search.criteria import VERIFIED_EVIDENCE

# (train images, test images, planted copies): the sizes of the measurements, and a larger one
SIZES = ((800, 300, 40), (3_000, 1_000, 140), (15_000, 5_000, 700))
PLANTED_PREFIX = "planted-"
BLIND_JUDGMENTS = Path(__file__).with_name("planted_blind_judgments.csv")
JUDGED_PER_SIZE = 40  # other flags per size on the judging sheets, at most
OTHER_FLAG = "other flag"
CONTROL_DIFFERENT = "random pair of one class"
CONTROLS = {CONTROL_SAME_SHOT: 20, CONTROL_SIMILAR: 10, CONTROL_DIFFERENT: 15}


@dataclass(frozen=True)
class PlantedResult:
    images: int
    planted: int
    verifier_threshold: float | None
    estimated_precision: float | None  # match_thresholds' held-out estimate (balanced pairs)
    expected_precision: float | None  # of all the first join's flags, at its base rate (base_rate)
    expected_measured: float | None  # of the measured pairs (planted found and other test flags)
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


def flagged_pairs(run: StoredRun) -> pl.DataFrame:
    """The run's duplicate pairs as paths (columns a, b)."""
    paths = run.manifest["path"].to_numpy()
    return run.pairs.select(
        pl.Series("a", paths[run.pairs["image_id_a"].to_numpy()]),
        pl.Series("b", paths[run.pairs["image_id_b"].to_numpy()]),
    )


def expected_on(run: StoredRun, measured: set[tuple[str, str]]) -> float | None:
    """The precision the run's ``copy_probability`` expects of the ``measured`` (test, train)
    pairs: their mean (None when the run has none, or nothing is measured)."""
    if "copy_probability" not in run.pairs.columns or not measured:
        return None
    paths = run.manifest["path"].to_numpy()
    a, b = paths[run.pairs["image_id_a"].to_numpy()], paths[run.pairs["image_id_b"].to_numpy()]
    chances = [
        chance
        for first, second, chance in zip(a, b, run.pairs["copy_probability"].to_list(), strict=True)
        if (first, second) in measured or (second, first) in measured
    ]
    known = [chance for chance in chances if chance is not None]
    return sum(known) / len(known) if known and len(known) == len(chances) else None


def other_flags(pairs: pl.DataFrame) -> pl.DataFrame:
    """The flagged (test_path, train_path) pairs of ``flagged_pairs`` whose test image is not planted."""
    return (
        pairs.with_columns(
            pl.when(pl.col("a").str.starts_with("test/")).then(pl.col("a")).otherwise(pl.col("b")).alias("test_path"),
            pl.when(pl.col("a").str.starts_with("test/")).then(pl.col("b")).otherwise(pl.col("a")).alias("train_path"),
        )
        .filter(pl.col("test_path").str.starts_with("test/") & pl.col("train_path").str.starts_with("train/"))
        .filter(~pl.col("test_path").str.contains(PLANTED_PREFIX, literal=True))
        .select("test_path", "train_path")
        .sort("test_path", "train_path")
    )


def measure(run: StoredRun, planted: dict[str, str]) -> tuple[PlantedResult, pl.DataFrame]:
    """The size's row, and the flagged (test, train) pairs whose test image is not planted."""
    pairs = flagged_pairs(run)
    found = {(a, b) for a, b in pairs.rows()} | {(b, a) for a, b in pairs.rows()}
    planted_found = sum((copy, source) in found for copy, source in planted.items())
    leaks = other_flags(pairs)
    verifier = run.threshold_table.filter(pl.col("evidence") == VERIFIED_EVIDENCE)
    threshold = run.thresholds.verifier.threshold if run.thresholds.verifier is not None else None
    estimate = verifier["holdout_precision"][0] if verifier.height else None
    measured = {(copy, source) for copy, source in planted.items() if (copy, source) in found} | set(leaks.rows())
    result = PlantedResult(
        images=run.manifest.height,
        planted=len(planted),
        verifier_threshold=threshold,
        estimated_precision=estimate,
        expected_precision=run.expected_precision,
        expected_measured=expected_on(run, measured),
        planted_found=planted_found,
        other_test_images=leaks["test_path"].n_unique(),
        other_pairs=leaks.height,
        seconds=run.seconds,
    )
    return result, leaks


def judging_pairs(
    others: dict[str, pl.DataFrame], unlisted: Sequence[str], cifair: pl.DataFrame, judged: pl.DataFrame | None = None
) -> pl.DataFrame:
    """The pairs to judge blind, shuffled and numbered: up to JUDGED_PER_SIZE other flags per size
    (``others``: size name -> flagged (test_path, train_path) pairs) not ``judged`` before (its
    test_path, train_path), mixed with controls of known verdict (ciFAIR's same-shot and "very
    similar" pairs, random pairs of one class). Columns: pair, group, size, test_path, train_path."""
    seen = pl.DataFrame(schema={"test_path": pl.String, "train_path": pl.String}) if judged is None else judged
    unjudged = {
        size: flags.unique()
        .join(seen.select("test_path", "train_path").unique(), on=["test_path", "train_path"], how="anti")
        .sort("test_path", "train_path")
        for size, flags in others.items()
    }
    parts = [
        flags.sample(n=min(JUDGED_PER_SIZE, flags.height), seed=0).select(
            pl.lit(OTHER_FLAG).alias("group"), pl.lit(size).alias("size"), "test_path", "train_path"
        )
        for size, flags in unjudged.items()
    ]
    # random pairs of one class: the k-th sampled test image of a class with the k-th shuffled train image of it
    in_class = pl.int_range(pl.len()).over("label").alias("rank")
    tests = (
        pl.DataFrame({"test_path": [path for path in unlisted if path.startswith("test/")]})
        .sample(n=CONTROLS[CONTROL_DIFFERENT], seed=1)
        .with_columns(pl.col("test_path").str.split("/").list.get(1).alias("label"))
        .with_columns(in_class)
    )
    trains = (
        pl.DataFrame({"train_path": [path for path in unlisted if path.startswith("train/")]})
        .sample(fraction=1.0, shuffle=True, seed=2)
        .with_columns(pl.col("train_path").str.split("/").list.get(1).alias("label"))
        .with_columns(in_class)
    )
    random_pairs = tests.join(trains, on=["label", "rank"])
    controls = {
        CONTROL_SAME_SHOT: cifair.filter(pl.col("judgment") <= 1).rename({"other_path": "train_path"}),
        CONTROL_SIMILAR: cifair.filter(pl.col("judgment") == 2).rename({"other_path": "train_path"}),
        CONTROL_DIFFERENT: random_pairs,
    }
    for group, pairs in controls.items():
        parts.append(
            pairs.sample(n=min(CONTROLS[group], pairs.height), seed=0).select(
                pl.lit(group).alias("group"), pl.lit(None, dtype=pl.String).alias("size"), "test_path", "train_path"
            )
        )
    pairs = pl.concat(parts).sample(fraction=1.0, shuffle=True, seed=0)
    return pairs.with_columns(pl.int_range(1, pl.len() + 1).alias("pair")).select("pair", pl.exclude("pair"))


def judged_other_flags(judgments: pl.DataFrame, others: dict[str, pl.DataFrame]) -> dict[str, tuple[int, float]]:
    """Per size: how many of its other flags now (``others``: size name -> flagged (test_path,
    train_path) pairs) have been judged, in this kit or an earlier one, and the share the judges
    called a different picture (averaged over judges). A pair's verdict is about its two pictures,
    so it holds whichever run flagged it."""
    flags = judgments.filter(pl.col("group") == OTHER_FLAG).with_columns(
        (1 - same_shot_share(judge_columns(judgments))).alias("different")
    )
    judged = {}
    for size, pairs in others.items():
        now = pairs.unique().join(
            flags.filter(pl.col("size") == size).group_by("test_path", "train_path").agg(pl.col("different").mean()),
            on=["test_path", "train_path"],
        )
        if now.height:
            judged[size] = (now.height, float(now["different"].mean()))
    return judged


def report(
    results: list[PlantedResult], sheets: list[str], commit: str, judged: dict[str, tuple[int, float]]
) -> list[str]:
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    lines = [
        "# Precision at every dataset size: CIFAR-10 subsets with planted copies",
        "",
        f"Written by `python -m dedup_pipeline.evaluation.planted` at commit {commit or 'unknown'}. "
        + (__doc__ or "").split("\n\n")[1].replace("\n", " "),
        "",
        "| images (with the planted) | planted copies | verifier threshold chosen | precision `match_thresholds` "
        "estimates (balanced pairs) | precision expected at the join's base rate: all flags | the same, of the "
        "measured pairs | planted found | other test images flagged (pairs) | of those judged blind: a different "
        "picture | measured precision: planted + judged | contact sheet | pipeline seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result, sheet in zip(results, sheets, strict=True):
        verdicts = judged.get(_size_name(result))
        lines.append(
            f"| {result.images:,} | {result.planted} | {number(result.verifier_threshold)} | "
            f"{number(result.estimated_precision)} | {number(result.expected_precision)} | "
            f"{number(result.expected_measured)} | "
            f"{result.planted_found}/{result.planted} | "
            f"{result.other_test_images} ({result.other_pairs}) | {_judged_cell(verdicts)} | "
            f"{number(measured_precision(result, verdicts))} | "
            f"[{Path(sheet).name}]({Path(sheet).name}) | "
            f"{result.seconds:.0f} |"
        )
    lines += [
        "",
        "Blind judging: up to 40 other flags per size, shuffled with controls of known verdict on numbered sheets "
        "(`--sheets`), judged without knowing which pair is which; the judgments are in "
        "`dedup_pipeline/evaluation/planted_blind_judgments.csv`. Each contact sheet shows all other flags of a "
        "size, test left, train right, in path order.",
        "",
    ]
    return lines


def measured_precision(result: PlantedResult, verdicts: tuple[int, float] | None) -> float | None:
    """Of the test-train pairs flagged (planted copies found and other flags), the share that are
    the same shot: every planted pair, and the other flags at the judged share (None unjudged)."""
    flagged = result.planted_found + result.other_pairs
    if not flagged:
        return None
    different = 0.0 if not result.other_pairs else None if verdicts is None else verdicts[1] * result.other_pairs
    return None if different is None else 1 - different / flagged


def _size_name(result: PlantedResult) -> str:
    return f"subset-{result.images}"


def _judged_cell(judged: tuple[int, float] | None) -> str:
    return "not judged" if judged is None else f"{judged[1]:.2f} of {judged[0]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dedup_pipeline.evaluation.planted", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--work", type=Path, default=Path("build/eval-planted"))
    parser.add_argument("--out", type=Path, default=Path("eval"))
    parser.add_argument("--sheets", type=Path, help="instead: write blind judging sheets of the last runs here")
    parser.add_argument("--key", type=Path, help="with --sheets: the key (keep it away from the judges)")
    args = parser.parse_args(argv)
    cifar = prepare_cifar(args.shared / "data" / "cifar10-jpeg.tar.gz", args.work / "cifar10")
    test_train, test_test = load_cifair(args.shared / "data" / "cifair")
    listed = {
        path for pairs in (test_train, test_test) for column in ("test_path", "other_path") for path in pairs[column]
    }
    unlisted = sorted(
        str(path.relative_to(cifar)) for path in cifar.rglob("*.jpg") if str(path.relative_to(cifar)) not in listed
    )
    if args.sheets is not None:
        return write_sheets(args, cifar, unlisted, test_train)
    results, sheets, others = [], [], {}
    for sizes in SIZES:
        name = f"subset-{sum(sizes)}"
        data = args.work / name
        if data.exists():
            shutil.rmtree(data)  # links and planted copies only: the CIFAR files stay
        planted = build_subset(cifar, data, sizes, unlisted)
        run = run_pipeline(data, args.work / f"{name}.duckdb")
        result, leaks = measure(run, planted)
        others[f"subset-{result.images}"] = leaks
        sheet = args.out / f"planted_{name}_others.png"
        contact_sheet(data, leaks, sheet)
        results.append(result)
        sheets.append(str(sheet))
    judged = judged_other_flags(pl.read_csv(BLIND_JUDGMENTS), others) if BLIND_JUDGMENTS.exists() else {}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = report(results, sheets, commit, judged)
    (args.out / "planted.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


def write_sheets(args: argparse.Namespace, cifar: Path, unlisted: Sequence[str], cifair: pl.DataFrame) -> int:
    """The blind judging sheets of the other flags the last runs left in ``args.work``."""
    if args.key is None:
        raise SystemExit("--sheets needs --key")
    others = {}
    for sizes in SIZES:
        name = f"subset-{sum(sizes)}"
        data = args.work / name
        run = load_run(args.work / f"{name}.duckdb", DedupConfig(data=str(data)))
        others[f"subset-{run.manifest.height}"] = other_flags(flagged_pairs(run))
    judged = pl.read_csv(BLIND_JUDGMENTS) if BLIND_JUDGMENTS.exists() else None
    write_kit(judging_pairs(others, unlisted, cifair, judged), cifar, args.sheets, args.key)  # paths are CIFAR's
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
