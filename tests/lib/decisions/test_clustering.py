import numpy as np
import polars as pl

from dedup_pipeline.lib.decisions.clustering import assign_clusters, build_clusters, leaking, star_clusters


def test_chain_is_not_one_cluster() -> None:
    # 0~1~2~3~4~5: connected components would make one cluster of unrelated ends.
    i, j = np.arange(5), np.arange(1, 6)
    assert star_clusters(6, i, j, np.arange(6)).tolist() == [0, 0, 2, 2, 4, 4]


def test_leaking_marks_the_lower_priority_side() -> None:
    rank = np.array([0, 1, 2, 1])
    assert leaking(rank, np.array([0, 1, 1]), np.array([1, 2, 3])).tolist() == [False, True, True, False]


def random_graph(rng: np.random.Generator, count: int, edges: int) -> tuple[np.ndarray, np.ndarray]:
    pairs = sorted({tuple(sorted(p)) for p in rng.integers(0, count, size=(edges, 2)).tolist() if p[0] != p[1]})
    return np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64)


def test_assignment_guarantees_on_random_graphs() -> None:
    rng = np.random.default_rng(1)
    for _ in range(40):
        count = 50
        i, j = random_graph(rng, count, 80)
        rank = rng.integers(0, 3, size=count)
        result = assign_clusters(rank, rng.integers(1, 100, size=count), i, j)
        neighbours = set(zip(i.tolist(), j.tolist(), strict=True)) | set(zip(j.tolist(), i.tolist(), strict=True))
        in_pairs = set(i.tolist()) | set(j.tolist())
        reps = {node for node in range(count) if result.representative[node] == node}
        assert not any((a, b) in neighbours for a in reps for b in reps)  # representatives never pair
        assert not any(result.leaks[r] for r in reps)  # and never leak
        for node in range(count):
            rep, link, hops = result.representative[node], result.linked_to[node], result.hops[node]
            if node not in in_pairs:
                assert (rep, link, hops) == (-1, -1, -1)
            elif node != rep:
                assert (node, link) in neighbours  # joined through a real duplicate pair
                assert result.representative[link] == rep and hops == result.hops[link] + 1
                if result.leaks[node]:
                    assert rank[link] < rank[node]
                else:
                    assert link == rep and rank[node] == rank[rep]


def test_build_clusters_links_an_evaluation_copy_to_the_train_image() -> None:
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
    pairs = pl.DataFrame({"image_id_a": [0, 1], "image_id_b": [2, 2], "hamming": [1, 3], "cosine": [0.9, 0.7]})
    clusters = build_clusters(manifest, pairs, {"train": 0, "val": 1, "test": 2})
    rows = {row["path"]: row for row in clusters.iter_rows(named=True)}
    assert {row["representative_path"] for row in rows.values()} == {"train/a.jpg"}
    assert rows["val/a.jpg"]["linked_to"] == "train/a.jpg" and rows["val/a.jpg"]["link_hamming"] == 3
    assert rows["test/a.jpg"]["linked_to"] == "val/a.jpg" and rows["test/a.jpg"]["hops_to_representative"] == 2
    assert rows["test/a.jpg"]["leaks"] and not rows["train/a.jpg"]["leaks"]
    assert clusters["max_hops"].unique().to_list() == [2]
    assert clusters["cluster_splits"].unique().to_list() == ["test,train,val"]


def test_no_pairs() -> None:
    manifest = pl.DataFrame(
        {"image_id": [0], "path": ["t/a"], "split": ["t"], "label": [None], "width": [1], "height": [1]}
    )
    pairs = pl.DataFrame(
        schema={"image_id_a": pl.Int64, "image_id_b": pl.Int64, "hamming": pl.Int64, "cosine": pl.Float32}
    )
    assert build_clusters(manifest, pairs, {"t": 0}).height == 0
