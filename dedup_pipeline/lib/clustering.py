"""Duplicate clusters with a bounded diameter.

Connected components chain unrelated images together (A~B~C~...~Z puts A and Z in one group
though they share nothing). We use greedy star clustering instead: images are visited in a
fixed order of preference; an image not yet assigned becomes a cluster's representative and
takes every still-unassigned image it is directly similar to.

Guarantees, whatever the graph:
* every member is directly similar to its representative, so a cluster's diameter is at most
  2 hops (and 1 when the cluster is a clique; reported as ``max_hops``);
* no two representatives are similar to each other (a later one would have been taken by the
  earlier one), which is what lets the dedup policy keep representatives without keeping a pair;
* the result depends only on the pairs and the preference order, so runs are reproducible.
"""

from __future__ import annotations

import numpy as np
import polars as pl


def adjacency(count: int, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compressed sparse rows of the undirected pair graph: neighbours of n are
    ``neighbours[offsets[n]:offsets[n + 1]]``."""
    sources = np.concatenate([i, j]).astype(np.int64)
    targets = np.concatenate([j, i]).astype(np.int64)
    order = np.argsort(sources, kind="stable")
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.add.at(offsets, sources + 1, 1)
    return np.cumsum(offsets), targets[order]


def star_clusters(count: int, i: np.ndarray, j: np.ndarray, preference: np.ndarray) -> np.ndarray:
    """Representative of each image (itself for representatives), -1 for images in no pair.

    ``preference`` is a permutation of the images with pairs or of all images: earlier entries
    become representatives first.
    """
    offsets, neighbours = adjacency(count, i, j)
    degree = np.diff(offsets)
    representative = np.full(count, -1, dtype=np.int64)
    for node in preference:
        if degree[node] == 0 or representative[node] != -1:
            continue
        representative[node] = node
        linked = neighbours[offsets[node] : offsets[node + 1]]
        representative[linked[representative[linked] == -1]] = node
    return representative


def preference_order(split_rank: np.ndarray, degree: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """Who represents a cluster: the highest-priority split first (so the kept copy is in the
    split that keeps), then the image with most duplicates, then the largest picture, then the
    lowest image id (path order)."""
    ids = np.arange(len(split_rank))
    return np.lexsort((ids, -pixels, -degree, split_rank))


def max_hops(representative: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Per image: its cluster's diameter in hops, 1 when all members are pairwise similar, else 2
    (0 for images in no cluster)."""
    count = len(representative)
    member = representative >= 0
    sizes = np.bincount(representative[member], minlength=count)
    same = member[i] & (representative[i] == representative[j])
    internal = np.bincount(representative[i[same]], minlength=count)
    hops = np.where(internal == sizes * (sizes - 1) // 2, 1, 2)
    return np.where(member, hops[np.maximum(representative, 0)], 0)


def build_clusters(manifest: pl.DataFrame, pairs: pl.DataFrame, ranks: dict[str, int]) -> pl.DataFrame:
    """One row per image that has at least one duplicate, with its cluster and representative."""
    count = manifest.height
    i, j = pairs["image_id_a"].to_numpy(), pairs["image_id_b"].to_numpy()
    degree = np.bincount(np.concatenate([i, j]), minlength=count)
    split_rank = manifest["split"].replace_strict(ranks, return_dtype=pl.Int64).to_numpy()
    pixels = (manifest["width"].cast(pl.Int64) * manifest["height"].cast(pl.Int64)).to_numpy()
    representative = star_clusters(count, i, j, preference_order(split_rank, degree, pixels))
    hops = max_hops(representative, i, j)

    members = pl.DataFrame(
        {"image_id": np.arange(count), "representative_id": representative, "max_hops": hops}
    ).filter(pl.col("representative_id") >= 0)
    to_representative = pl.concat(
        [
            pairs.select(
                pl.col("image_id_a").alias("image_id"),
                pl.col("image_id_b").alias("representative_id"),
                "hamming",
                "cosine",
            ),
            pairs.select(
                pl.col("image_id_b").alias("image_id"),
                pl.col("image_id_a").alias("representative_id"),
                "hamming",
                "cosine",
            ),
        ]
    )
    info = manifest.select("image_id", "path", "split", "label")
    clustered = (
        members.join(info, on="image_id")
        .join(
            info.select(pl.col("image_id").alias("representative_id"), pl.col("path").alias("representative_path")),
            on="representative_id",
        )
        .join(to_representative, on=["image_id", "representative_id"], how="left")
        .with_columns(
            pl.col("representative_id").rank("dense").cast(pl.Int64).alias("cluster_id"),
            (pl.col("image_id") == pl.col("representative_id")).alias("is_representative"),
            pl.len().over("representative_id").cast(pl.Int64).alias("cluster_size"),
            pl.col("split").unique().sort().str.join(",").over("representative_id").alias("cluster_splits"),
        )
    )
    return clustered.select(
        "cluster_id",
        "image_id",
        "path",
        "split",
        "label",
        "is_representative",
        "representative_id",
        "representative_path",
        pl.col("hamming").alias("hamming_to_representative"),
        pl.col("cosine").alias("cosine_to_representative"),
        "cluster_size",
        "cluster_splits",
        "max_hops",
    ).sort("cluster_id", "is_representative", "image_id", descending=[False, True, False])
