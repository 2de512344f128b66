import polars as pl

from dedup_pipeline.lib.decisions.reports import (
    label_conflicts,
    leak_budget_verdict,
    leak_report,
    leaked_fraction_by_split,
    leaked_images,
)
from tests.lib.decisions.test_dedup_policy import dataset


def test_leak_report_counts_every_split_pair() -> None:
    manifest, pairs = dataset(["train", "train", "val", "test", "test", "test"], [(0, 3), (1, 3), (2, 4), (0, 1)])
    manifest = manifest.with_columns(pl.Series("label", ["a", "a", "b", "a", "c", "b"]))
    ranks = {"train": 0, "val": 1, "test": 2}
    leaked = leaked_images(manifest, pairs, ranks)
    report = {
        (r["eval_split"], r["reference_split"]): r for r in leak_report(manifest, leaked, ranks).iter_rows(named=True)
    }
    assert set(report) == {("val", "train"), ("test", "train"), ("test", "val")}
    assert report[("test", "train")]["leaked_images"] == 1
    assert report[("test", "train")]["leaked_pairs"] == 2
    assert report[("test", "train")]["same_label_images"] == 1
    assert abs(report[("test", "train")]["leaked_fraction"] - 1 / 3) < 1e-9
    assert report[("test", "val")]["conflicting_label_images"] == 1
    assert report[("val", "train")]["leaked_images"] == 0
    per_split = dict(leaked_fraction_by_split(manifest, leaked, ranks).select("split", "leaked_images").iter_rows())
    assert per_split == {"test": 2, "val": 0}


def test_label_conflicts_lists_pairs_with_different_labels() -> None:
    manifest, pairs = dataset(["train", "test", "test"], [(0, 1), (1, 2)])
    manifest = manifest.with_columns(pl.Series("label", ["cat", "dog", None]))
    conflicts = label_conflicts(manifest, pairs.with_columns(pl.lit("phash").alias("evidence")))
    assert conflicts.select("label_a", "label_b").rows() == [("cat", "dog")]


def test_reports_on_an_empty_manifest() -> None:
    manifest, pairs = dataset([], [])
    leaked = leaked_images(manifest, pairs, {})
    assert leak_report(manifest, leaked, {}).height == 0
    assert leaked_fraction_by_split(manifest, leaked, {}).height == 0


def test_the_leak_verdict_names_the_splits_over_the_budget_and_by_how_much() -> None:
    per_split = pl.DataFrame(
        {"split": ["test", "val"], "images": [200, 50], "leaked_images": [9, 1], "leaked_fraction": [0.045, 0.02]}
    )
    assert leak_budget_verdict(per_split, 0.03) == "over the budget of 3.00%: test 4.50% (9 of 200 images)"
    assert leak_budget_verdict(per_split, 0.0) == (
        "over the budget of 0.00%: test 4.50% (9 of 200 images); val 2.00% (1 of 50 images)"
    )
    assert leak_budget_verdict(per_split, 0.05) == (
        "every evaluation split within the budget of 5.00% (most: test 4.50% (9 of 200 images))"
    )
