import numpy as np
import polars as pl

from dedup_pipeline.lib.clustering import build_clusters
from dedup_pipeline.lib.dedup_policy import decide, guarantee_violations
from dedup_pipeline.lib.splits import split_ranks


def dataset(splits: list[str], edges: list[tuple[int, int]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    manifest = pl.DataFrame(
        {
            "image_id": range(len(splits)),
            "path": [f"{split}/{index:03d}.jpg" for index, split in enumerate(splits)],
            "split": splits,
            "label": ["a"] * len(splits),
            "width": [32] * len(splits),
            "height": [32] * len(splits),
        }
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
    ranks = split_ranks(manifest["split"], priority)
    decisions = decide(manifest, pairs, build_clusters(manifest, pairs, ranks), ranks)
    assert guarantee_violations(decisions, pairs) == {"kept_cross_split_pairs": 0, "clusters_keeping_more_than_one": 0}
    return decisions


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
    # 0 represents train {0, 1, 3}; test 2 is only similar to the non-representatives 1 and 3,
    # which drop as within-train duplicates, yet 2 still copies train data and must drop.
    decisions = run_policy(["train", "train", "test", "train"], [(0, 1), (1, 2), (2, 3), (0, 3)])
    assert decisions["reason"].to_list() == ["representative", "duplicate", "leak", "duplicate"]


def test_guarantees_hold_on_random_graphs() -> None:
    rng = np.random.default_rng(3)
    for _ in range(25):
        splits = rng.choice(["train", "val", "test", "extra"], size=60).tolist()
        edges = sorted({tuple(sorted(e)) for e in rng.integers(0, 60, size=(90, 2)).tolist() if e[0] != e[1]})
        decisions = run_policy(splits, edges)
        assert decisions.height == 60  # every image gets a decision
        assert set(decisions["reason"]) <= {"unique", "representative", "leak", "duplicate"}
