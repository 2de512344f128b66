import numpy as np
import polars as pl

from dedup_pipeline.lib.clustering import build_clusters, max_hops, preference_order, star_clusters


def test_chain_is_not_one_cluster() -> None:
    # 0~1~2~3~4~5: connected components would make one cluster of unrelated ends.
    i, j = np.arange(5), np.arange(1, 6)
    representative = star_clusters(6, i, j, np.arange(6))
    assert representative.tolist() == [0, 0, 2, 2, 4, 4]


def test_random_graphs_keep_the_guarantees() -> None:
    rng = np.random.default_rng(1)
    for _ in range(30):
        count = 40
        edges = {tuple(sorted(pair)) for pair in rng.integers(0, count, size=(60, 2)).tolist() if pair[0] != pair[1]}
        i, j = (np.array(side, dtype=np.int64) for side in zip(*edges, strict=True))
        neighbours = {(a, b) for a, b in edges} | {(b, a) for a, b in edges}
        representative = star_clusters(count, i, j, rng.permutation(count))
        in_pairs = set(i.tolist()) | set(j.tolist())
        for node in range(count):
            rep = representative[node]
            assert (rep == -1) == (node not in in_pairs)
            if rep >= 0 and rep != node:
                assert (node, rep) in neighbours  # every member touches its representative
        reps = {int(r) for r in representative if r >= 0}
        assert not any((a, b) in neighbours for a in reps for b in reps)  # representatives never pair
        assert all(representative[r] == r for r in reps)


def test_preference_puts_split_priority_first_then_degree() -> None:
    order = preference_order(np.array([1, 0, 0, 0]), np.array([9, 1, 3, 3]), np.array([1, 1, 1, 5]))
    assert order.tolist() == [3, 2, 1, 0]


def test_max_hops() -> None:
    representative = np.array([0, 0, 0, 3, 3, -1])
    i, j = np.array([0, 0, 1, 3]), np.array([1, 2, 2, 4])
    assert max_hops(representative, i, j).tolist() == [1, 1, 1, 1, 1, 0]
    assert max_hops(representative, i[[0, 1, 3]], j[[0, 1, 3]]).tolist() == [2, 2, 2, 1, 1, 0]


def test_build_clusters_picks_the_train_image_as_representative() -> None:
    manifest = pl.DataFrame(
        {
            "image_id": [0, 1, 2],
            "path": ["test/a.jpg", "train/a.jpg", "val/a.jpg"],
            "split": ["test", "train", "val"],
            "label": ["x", "x", "y"],
            "width": [10, 10, 20],
            "height": [10, 10, 20],
        }
    )
    pairs = pl.DataFrame(
        {"image_id_a": [0, 0, 1], "image_id_b": [1, 2, 2], "hamming": [1, 2, 3], "cosine": [0.9, 0.8, 0.7]}
    )
    clusters = build_clusters(manifest, pairs, {"train": 0, "val": 1, "test": 2})
    assert clusters["representative_path"].unique().to_list() == ["train/a.jpg"]
    assert clusters.filter(pl.col("path") == "val/a.jpg")["hamming_to_representative"].item() == 3
    assert clusters["cluster_size"].unique().to_list() == [3]
    assert clusters["cluster_splits"].unique().to_list() == ["test,train,val"]
