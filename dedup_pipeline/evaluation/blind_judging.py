"""A blind check of how complete ciFAIR's lists are, and of how the pipeline's flags fare.

ciFAIR's people judged the nearest training neighbour of test images in the feature space of a CNN
trained on CIFAR; a same-shot copy that was not that neighbour, or not shown, is not in the lists. To
count those, we rank every test image by its best candidate pair (the run's verifier), sample test
images ciFAIR does not list from bands of that ranking, and have them judged *blind*: mixed at random
with control pairs whose ciFAIR verdict is known (judgment 0/1, judgment 2) and with pairs from deep in
the ranking, so the judges' own strictness is measured on the same sheets. The judges see numbered
pairs only, never where a pair came from.

``python -m dedup_pipeline.evaluation.blind_judging`` writes the sheets and the key from a finished
CIFAR-10 run; the judgments, merged with the key, are committed as ``cifar_blind_judgments.csv`` and
read by ``make eval``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from PIL import Image, ImageDraw

from dedup_pipeline.defs.resources import DedupConfig
from dedup_pipeline.evaluation.cifar import best_partners, candidate_scores, enlarged, load_cifair
from dedup_pipeline.evaluation.runs import load_run

BLIND_JUDGMENTS = Path(__file__).with_name("cifar_blind_judgments.csv")
# ciFAIR's categories: exact and near-duplicates are the same shot (the pairs the target counts).
SAME_SHOT = ("exact", "near")
UNLISTED = "unlisted"
CONTROL_SAME_SHOT = "ciFAIR 0/1"
CONTROL_SIMILAR = "ciFAIR 2"
CONTROL_DEEP = "deep in the ranking"


@dataclass(frozen=True)
class Band:
    """Ranks [start, stop) of the test-image ranking, and how many unlisted test images to sample."""

    start: int
    stop: int
    sampled: int

    @property
    def name(self) -> str:
        return f"{self.start}-{self.stop}"


BANDS = (Band(0, 200, 25), Band(200, 400, 30), Band(400, 600, 30), Band(600, 1000, 30), Band(1000, 2000, 20))
CONTROLS = {CONTROL_SAME_SHOT: 30, CONTROL_SIMILAR: 20, CONTROL_DEEP: 15}
DEEP_FROM = 4000
PAIRS_PER_SHEET = 10


def sample_pairs(ranking: pl.DataFrame, test_train: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """The pairs to judge, shuffled and numbered: unlisted test images with their best partner, per band
    of the ranking, and the controls (ciFAIR's own pairs, and best partners from deep in the ranking).
    Columns: pair, group, band, band_unlisted, test_path, train_path."""
    listed = test_train["test_path"].unique()
    unlisted = ranking.filter(~pl.col("test_path").is_in(listed.implode()))
    parts = []
    for band in BANDS:
        members = unlisted.filter((pl.col("rank") >= band.start) & (pl.col("rank") < band.stop))
        parts.append(
            members.sample(n=min(band.sampled, members.height), seed=seed).select(
                pl.lit(UNLISTED).alias("group"),
                pl.lit(band.name).alias("band"),
                pl.lit(members.height).alias("band_unlisted"),
                "test_path",
                "train_path",
            )
        )
    controls = {
        CONTROL_SAME_SHOT: test_train.filter(pl.col("judgment") <= 1),
        CONTROL_SIMILAR: test_train.filter(pl.col("judgment") == 2),
        CONTROL_DEEP: unlisted.filter(pl.col("rank") >= DEEP_FROM).rename({"train_path": "other_path"}),
    }
    for group, pairs in controls.items():
        parts.append(
            pairs.sample(n=min(CONTROLS[group], pairs.height), seed=seed).select(
                pl.lit(group).alias("group"),
                pl.lit(None, dtype=pl.String).alias("band"),
                pl.lit(pairs.height).alias("band_unlisted"),
                "test_path",
                pl.col("other_path").alias("train_path"),
            )
        )
    pairs = pl.concat(parts).sample(fraction=1.0, shuffle=True, seed=seed)
    return pairs.with_columns(pl.int_range(1, pl.len() + 1).alias("pair")).select("pair", pl.exclude("pair"))


def judging_sheets(pairs: pl.DataFrame, root: Path, out: Path, scale: int = 4) -> list[Path]:
    """One sheet per ``PAIRS_PER_SHEET`` pairs: each row is the pair's number, the test image, the
    other image and the other image mirrored (mirrored copies count as the same shot)."""
    cell, label = 32 * scale, 60
    out.mkdir(parents=True, exist_ok=True)
    sheets = []
    for first in range(0, pairs.height, PAIRS_PER_SHEET):
        chunk = pairs.slice(first, PAIRS_PER_SHEET)
        sheet = Image.new("RGB", (label + 3 * (cell + 8), chunk.height * (cell + 8)), "white")
        draw = ImageDraw.Draw(sheet)
        for row, (number, test_path, train_path) in enumerate(chunk.select("pair", "test_path", "train_path").rows()):
            y = row * (cell + 8)
            draw.text((8, y + cell // 2 - 6), f"#{number}", fill="black")
            for column, (path, mirror) in enumerate(((test_path, False), (train_path, False), (train_path, True))):
                sheet.paste(enlarged(root / path, cell, mirror), (label + column * (cell + 8), y))
        target = out / f"sheet_{first // PAIRS_PER_SHEET + 1:02d}.png"
        sheet.save(target)
        sheets.append(target)
    return sheets


def write_kit(pairs: pl.DataFrame, root: Path, sheets: Path, key: Path) -> None:
    """The judging sheets of numbered ``pairs`` (paths below ``root``) in ``sheets``, for the judges,
    and the key (``pairs`` itself) in ``key``, to keep away from them."""
    written = judging_sheets(pairs, root, sheets)
    key.parent.mkdir(parents=True, exist_ok=True)
    pairs.write_csv(key)
    print(f"{pairs.height} pairs on {len(written)} sheets in {sheets}; key in {key}")


def same_shot_share(judges: Sequence[str]) -> pl.Expr:
    """Per row, the share of ``judges`` who called the pair the same shot (exact or near)."""
    return pl.mean_horizontal([pl.col(judge).is_in(SAME_SHOT).cast(pl.Float64) for judge in judges])


def judge_columns(judgments: pl.DataFrame) -> list[str]:
    return [column for column in judgments.columns if column.startswith("judge_")]


def control_rates(judgments: pl.DataFrame) -> pl.DataFrame:
    """Per group, how often each judge said 'same shot': the judges' sensitivity on ciFAIR's
    duplicates and their leniency on ciFAIR's 'very similar' pairs and on deep pairs."""
    judges = judge_columns(judgments)
    return judgments.group_by("group", maintain_order=True).agg(
        pl.len().alias("judged"),
        *[pl.col(judge).is_in(SAME_SHOT).mean().alias(f"same shot, {judge}") for judge in judges],
        pl.all_horizontal([pl.col(judge).is_in(SAME_SHOT) for judge in judges]).mean().alias("same shot, all judges"),
    )


def unlisted_estimate(judgments: pl.DataFrame) -> pl.DataFrame:
    """Per band of the ranking: unlisted test images, how many were judged, the judges' same-shot
    share (averaged over judges) and the estimated same-shot duplicates among the band's unlisted."""
    judges = judge_columns(judgments)
    return (
        judgments.filter(pl.col("group") == UNLISTED)
        .with_columns(same_shot_share(judges).alias("share"))
        .group_by("band", maintain_order=True)
        .agg(pl.col("band_unlisted").first().alias("unlisted"), pl.len().alias("judged"), pl.col("share").mean())
        .sort(pl.col("band").str.split("-").list.first().cast(pl.Int64))
        .with_columns((pl.col("unlisted") * pl.col("share")).round(0).cast(pl.Int64).alias("estimated same shot"))
    )


def _judged_among(flagged: pl.DataFrame, judgments: pl.DataFrame) -> pl.DataFrame:
    """The judged pairs among flagged (test_path, train_path) pairs, with their same-shot share."""
    return (
        flagged.unique()
        .join(judgments, on=["test_path", "train_path"], how="inner")
        .with_columns(same_shot_share(judge_columns(judgments)).alias("same shot"))
    )


def judged_flags(flagged: pl.DataFrame, judgments: pl.DataFrame) -> pl.DataFrame:
    """The judged pairs among a recipe's flagged (test_path, train_path) pairs, per group: how many
    and their mean same-shot share (over judges)."""
    return (
        _judged_among(flagged, judgments)
        .group_by("group")
        .agg(pl.len().alias("flagged and judged"), pl.col("same shot").mean())
        .sort("group")
    )


def judged_share(flagged: pl.DataFrame, judgments: pl.DataFrame) -> tuple[int, float | None]:
    """How many judged pairs are among the flagged (test_path, train_path) pairs, and their mean
    same-shot share: the flags' precision by the judges' eyes, on the judged sample."""
    judged = _judged_among(flagged, judgments)
    return judged.height, (judged["same shot"].mean() if judged.height else None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write blind judging sheets and their key from a CIFAR-10 run.")
    parser.add_argument("--shared", type=Path, default=Path("../shared"), help="the shared data folder")
    parser.add_argument("--work", type=Path, default=Path("build/eval"), help="where make eval left its run")
    parser.add_argument("--sheets", type=Path, required=True, help="where the sheets go (what the judges see)")
    parser.add_argument("--key", type=Path, required=True, help="the key (keep it away from the judges)")
    args = parser.parse_args(argv)
    root = args.work / "cifar10"
    run = load_run(args.work / "cifar10.duckdb", DedupConfig(data=str(root)))
    scores = candidate_scores(run)
    if scores is None:
        raise SystemExit("the run has no trained verifier to rank test images with")
    test_train, _ = load_cifair(args.shared / "data" / "cifair")
    write_kit(sample_pairs(best_partners(run.manifest, scores), test_train), root, args.sheets, args.key)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
