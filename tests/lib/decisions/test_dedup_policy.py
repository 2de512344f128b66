import numpy as np
import polars as pl

from dedup_pipeline.lib.decisions.clustering import build_clusters
from dedup_pipeline.lib.decisions.dedup_policy import decide, guarantee_violations
from dedup_pipeline.lib.decisions.splits import split_ranks

NO_VIOLATIONS = {"kept_duplicate_pairs": 0, "clusters_not_keeping_exactly_one": 0, "drops_without_a_real_duplicate": 0}


def dataset(splits: list[str], edges: list[tuple[int, int]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    manifest = pl.DataFrame(
        {
            "image_id": range(len(splits)),
            "path": [f"{split}/{index:03d}.jpg" for index, split in enumerate(splits)],
            "split": splits,
            "label": ["a"] * len(splits),
            "width": [32] * len(splits),
            "height": [32] * len(splits),
        },
        schema={
            "image_id": pl.Int64,
            "path": pl.String,
            "split": pl.String,
            "label": pl.String,
            "width": pl.Int32,
            "height": pl.Int32,
        },
    )
    pairs = pl.DataFrame(
        {
            "image_id_a": [min(e) for e in edges],
            "image_id_b": [max(e) for e in edges],
            "hamming": [0] * len(edges),
            "cosine": [1.0] * len(edges),
        },
        schema={"image_id_a": pl.Int64, "image_id_b": pl.Int64, "hamming": pl.Int64, "cosine": pl.Float32},
    )
    return manifest, pairs


def run_policy(
    splits: list[str], edges: list[tuple[int, int]], priority: tuple[str, ...] = ("train", "val", "test")
) -> pl.DataFrame:
    manifest, pairs = dataset(splits, edges)
    decisions = decide(manifest, build_clusters(manifest, pairs, split_ranks(manifest["split"], priority)))
    assert guarantee_violations(decisions, pairs) == NO_VIOLATIONS
    return decisions.sort("image_id")  # decisions come in path order; these tests read them by id


def test_default_policy_train_keeps_evaluation_drops() -> None:
    decisions = run_policy(["train", "train", "test", "val", "test"], [(0, 2), (0, 3), (0, 1)])
    reasons = dict(zip(decisions["path"], decisions["reason"], strict=True))
    assert reasons == {
        "train/000.jpg": "representative",
        "train/001.jpg": "duplicate",
        "test/002.jpg": "leak",
        "val/003.jpg": "leak",
        "test/004.jpg": "unique",
    }
    assert decisions.filter(pl.col("path") == "test/002.jpg")["duplicate_of"].item() == "train/000.jpg"


def test_priority_is_configurable() -> None:
    decisions = run_policy(["train", "test"], [(0, 1)], priority=("test", "train"))
    assert decisions["reason"].to_list() == ["leak", "representative"]


def test_evaluation_images_that_duplicate_a_dropped_train_image_still_drop() -> None:
    # 0 represents train {0, 1, 3}; test 2 is only similar to 1 and 3, which drop as within-train
    # duplicates, yet 2 still copies train data and must drop.
    decisions = run_policy(["train", "train", "test", "train"], [(0, 1), (1, 2), (2, 3), (0, 3)])
    assert decisions["reason"].to_list() == ["representative", "duplicate", "leak", "duplicate"]


def test_images_linked_only_through_a_leaking_image_are_both_kept() -> None:
    # train 0 with copies 1-3; test 4 copies train 1 and is similar to tests 5 and 6; 5 ~ 7.
    # 4 leaks; 5 and 7 are duplicates (one must drop); 6 is no duplicate of 5 or 7 (must stay).
    edges = [(0, 1), (0, 2), (0, 3), (1, 4), (4, 5), (4, 6), (5, 7)]
    decisions = run_policy(["train"] * 4 + ["test"] * 4, edges)
    reasons = dict(zip(decisions["image_id"], decisions["reason"], strict=True))
    assert reasons[4] == "leak" and reasons[6] == "representative"
    assert sorted([reasons[5], reasons[7]]) == ["duplicate", "representative"]


def test_guarantees_hold_on_random_graphs() -> None:
    rng = np.random.default_rng(3)
    for _ in range(30):
        splits = rng.choice(["train", "val", "test", "extra"], size=60).tolist()
        edges = sorted({tuple(sorted(e)) for e in rng.integers(0, 60, size=(90, 2)).tolist() if e[0] != e[1]})
        decisions = run_policy(splits, edges)
        assert decisions.height == 60  # every image gets a decision
        assert set(decisions["reason"]) <= {"unique", "representative", "leak", "duplicate"}


def test_violations_are_detected() -> None:
    manifest, pairs = dataset(["train", "test"], [(0, 1)])
    kept_both = manifest.select("image_id", "path").with_columns(
        pl.lit(True).alias("keep"), pl.lit(1).alias("cluster_id"), pl.lit(None, dtype=pl.String).alias("duplicate_of")
    )
    violations = guarantee_violations(kept_both, pairs)
    assert violations["kept_duplicate_pairs"] == 1 and violations["clusters_not_keeping_exactly_one"] == 1
