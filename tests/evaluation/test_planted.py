from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from dedup_pipeline.evaluation.planted import (
    CONTROL_DIFFERENT,
    OTHER_FLAG,
    PLANTED_PREFIX,
    PlantedResult,
    build_subset,
    judged_other_flags,
    judging_pairs,
    measure,
    measured_precision,
)
from dedup_pipeline.evaluation.runs import StoredRun
from dedup_pipeline.lib.search.criteria import MatchThresholds
from dedup_pipeline.lib.verification.pair_scorer import PairScorer
from tests.conftest import smooth_picture


def fitted_scorer() -> PairScorer:
    return PairScorer(("a",), np.zeros(1), np.ones(1), np.eye(1, dtype=np.int64), np.ones(1), 0.0, 0.9)


def test_a_subset_gets_its_planted_copies_and_the_other_flags_are_counted(tmp_path: Path) -> None:
    cifar = tmp_path / "cifar"
    unlisted = [f"train/cat/{k}.png" for k in range(6)] + [f"test/cat/{k}.png" for k in range(4)]
    for seed, relative in enumerate(unlisted):
        (cifar / relative).parent.mkdir(parents=True, exist_ok=True)
        smooth_picture(seed, size=(32, 32)).save(cifar / relative)
    planted = build_subset(cifar, tmp_path / "subset", (4, 2, 2), sorted(unlisted))
    files = sorted(str(path.relative_to(tmp_path / "subset")) for path in (tmp_path / "subset").rglob("*.png"))
    assert len(files) == 8 and sum(PLANTED_PREFIX in name for name in files) == 2
    assert set(planted) <= set(files) and all(source.startswith("train/") for source in planted.values())

    paths = np.array(files)
    position = {path: k for k, path in enumerate(files)}
    copy, source = next(iter(planted.items()))
    other_test = next(path for path in files if path.startswith("test/") and PLANTED_PREFIX not in path)
    found = [(position[copy], position[source]), (position[other_test], position["train/cat/0.png"])]
    run = StoredRun(
        database=tmp_path / "x.duckdb",
        config=None,
        manifest=pl.DataFrame({"path": paths}),
        hashes={},
        embeddings=None,
        thresholds=MatchThresholds(hamming={}, verifier=fitted_scorer().with_threshold(0.5)),
        threshold_table=pl.DataFrame({"evidence": ["verified"], "threshold": [0.5], "holdout_precision": [1.0]}),
        thumbnails=np.zeros((len(files), 32, 32, 3), dtype=np.uint8),
        pairs=pl.DataFrame(
            {
                "image_id_a": [min(a, b) for a, b in found],
                "image_id_b": [max(a, b) for a, b in found],
                "copy_probability": [1.0, 0.5],
            }
        ),
        seconds=1.0,
    )
    result, others = measure(run, planted)
    assert (result.planted_found, result.other_test_images, result.other_pairs) == (1, 1, 1)
    assert (result.verifier_threshold, result.estimated_precision) == (0.5, 1.0)
    assert result.expected_measured == 0.75  # the planted pair and the other flag
    assert others.rows() == [(other_test, "train/cat/0.png")]


def test_judging_mixes_the_other_flags_with_controls_and_reads_back_the_verdicts() -> None:
    others = {"subset-10": pl.DataFrame({"test_path": ["test/cat/1.jpg"], "train_path": ["train/cat/2.jpg"]})}
    unlisted = [
        f"{split}/{label}/{k}.jpg" for split in ("test", "train") for label in ("cat", "dog") for k in range(20)
    ]
    cifair = pl.DataFrame(
        {
            "test_path": ["test/cat/9.jpg", "test/dog/9.jpg"],
            "other_path": ["train/x.jpg", "train/y.jpg"],
            "judgment": [0, 2],
        }
    )
    pairs = judging_pairs(others, unlisted, cifair)
    assert pairs["pair"].to_list() == list(range(1, pairs.height + 1))
    groups = dict(pairs.group_by("group").len().rows())
    assert groups[OTHER_FLAG] == 1 and groups["ciFAIR 0/1"] == 1 and groups["ciFAIR 2"] == 1
    randoms = pairs.filter(pl.col("group") == CONTROL_DIFFERENT)
    assert randoms.height == 15 and randoms["train_path"].n_unique() == 15  # a partner of its class each
    assert all(a.split("/")[1] == b.split("/")[1] for a, b in randoms.select("test_path", "train_path").rows())

    judgments = pairs.with_columns(
        pl.when(pl.col("group") == OTHER_FLAG).then(pl.lit("different")).otherwise(pl.lit("near")).alias("judge_a"),
        pl.lit("near").alias("judge_b"),
    )
    assert judged_other_flags(judgments, others) == {"subset-10": (1, 0.5)}
    # only the pairs flagged now count, and a later kit leaves out the pairs judged already
    assert judged_other_flags(judgments, {"subset-10": others["subset-10"].clear()}) == {}
    again = judging_pairs(others, unlisted, cifair, judgments)
    assert again.filter(pl.col("group") == OTHER_FLAG).height == 0


def test_measured_precision_counts_the_planted_and_the_judged_share_of_the_others() -> None:
    result = PlantedResult(
        images=100,
        planted=10,
        verifier_threshold=0.9,
        estimated_precision=1.0,
        expected_precision=0.95,
        expected_measured=0.9,
        planted_found=9,
        other_test_images=1,
        other_pairs=1,
        seconds=1.0,
    )
    assert measured_precision(result, (1, 1.0)) == 0.9  # 9 planted and 1 different picture
    assert measured_precision(result, None) is None
    assert measured_precision(replace(result, other_pairs=0), None) == 1.0
