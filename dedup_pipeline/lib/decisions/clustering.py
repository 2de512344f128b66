"""Duplicate clusters with a bounded, reported radius, built so that deduplication is one rule:
keep each cluster's representative.

Connected components chain unrelated images (A~B~C puts A and C together though they share
nothing). Instead:

1. An image *leaks* when it duplicates an image of a higher-priority split. Among the images
   that do not leak, greedy star clustering over their pairs (which are all within one split): in
   a fixed preference order, an unassigned image becomes a representative and takes its
   unassigned duplicates.
2. Each leaking image joins the cluster of one of its duplicates in a higher-priority split, the
   one fewest links away from its representative (then the lowest id). Splits are placed in
   priority order, so that duplicate is already placed.

Guarantees, whatever the graph:
* representatives never duplicate each other and never leak, so keeping exactly the
  representatives keeps one image per cluster and no duplicate pair at all, within or across
  splits;
* every other image is linked to its cluster through a real duplicate pair (``linked_to``);
  ``hops`` counts the links to the representative: 1 for images of the representative's split,
  one more than its partner for a leaking image. A cluster's diameter is at most twice its
  largest ``hops``;
* the result depends only on the pairs and the preference order, so runs are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from dedup_pipeline.lib.decisions.splits import with_split_rank


@dataclass(frozen=True)
class ClusterAssignment:
    """Per image: ``representative`` (itself for representatives, -1 when in no pair),
    ``linked_to`` (the duplicate it joined through, -1 for representatives and unpaired images),
    ``hops`` (links to the representative, 0 for it, -1 when unpaired) and ``leaks``."""

    representative: np.ndarray
    linked_to: np.ndarray
    hops: np.ndarray
    leaks: np.ndarray


def adjacency(count: int, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compressed sparse rows of the undirected pair graph: neighbours of n are
    ``neighbours[offsets[n]:offsets[n + 1]]``."""
    sources = np.concatenate([i, j]).astype(np.int64)
    targets = np.concatenate([j, i]).astype(np.int64)
    order = np.argsort(sources, kind="stable")
    offsets = np.zeros(count + 1, dtype=np.int64)
    np.add.at(offsets, sources + 1, 1)
    return np.cumsum(offsets), targets[order]


def star_clusters(count: int, i: np.ndarray, j: np.ndarray, visit_order: np.ndarray) -> np.ndarray:
    """Representative of each image, -1 for images neither visited nor taken.

    Images are visited in ``visit_order``; an unassigned one becomes a representative (even with
    no pair in ``i, j``) and takes its unassigned neighbours.
    """
    offsets, neighbours = adjacency(count, i, j)
    representative = np.full(count, -1, dtype=np.int64)
    for node in visit_order:
        if representative[node] != -1:
            continue
        representative[node] = node
        linked = neighbours[offsets[node] : offsets[node + 1]]
        representative[linked[representative[linked] == -1]] = node
    return representative


def leaking(split_rank: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Images with a duplicate in a higher-priority (lower rank) split."""
    leaks = np.zeros(len(split_rank), dtype=bool)
    leaks[j[split_rank[i] < split_rank[j]]] = True
    leaks[i[split_rank[j] < split_rank[i]]] = True
    return leaks


def assign_clusters(split_rank: np.ndarray, pixels: np.ndarray, i: np.ndarray, j: np.ndarray) -> ClusterAssignment:
    """Cluster the images of the pair graph ``(i, j)``; see the module docstring."""
    count = len(split_rank)
    ids = np.arange(count)
    leaks = leaking(split_rank, i, j)
    in_pair = np.bincount(np.concatenate([i, j]).astype(np.int64), minlength=count) > 0

    # Phase 1: star clusters of the non-leaking images. Preference: most duplicates, then the
    # largest picture, then the lowest id (path order).
    within = ~leaks[i] & ~leaks[j]
    wi, wj = i[within], j[within]
    degree = np.bincount(np.concatenate([wi, wj]).astype(np.int64), minlength=count)
    nodes = np.flatnonzero(in_pair & ~leaks)
    visit_order = nodes[np.lexsort((nodes, -pixels[nodes], -degree[nodes], split_rank[nodes]))]
    representative = star_clusters(count, wi, wj, visit_order)
    placed = representative >= 0
    linked_to = np.where(placed & (representative != ids), representative, -1)
    hops = np.where(representative == ids, 0, np.where(placed, 1, -1))

    # Phase 2: leaking images join a higher-priority duplicate's cluster, split by split.
    a, b = np.concatenate([i, j]).astype(np.int64), np.concatenate([j, i]).astype(np.int64)
    for level in np.unique(split_rank[leaks]):
        mask = leaks[a] & (split_rank[a] == level) & (split_rank[b] < level)
        node, partner = a[mask], b[mask]
        order = np.lexsort((partner, hops[partner], node))
        node, partner = node[order], partner[order]
        first = np.unique(node, return_index=True)[1]
        node, partner = node[first], partner[first]
        representative[node] = representative[partner]
        linked_to[node] = partner
        hops[node] = hops[partner] + 1
    return ClusterAssignment(representative, linked_to, hops, leaks)


def build_clusters(manifest: pl.DataFrame, pairs: pl.DataFrame, ranks: dict[str, int]) -> pl.DataFrame:
    """One row per image that has at least one duplicate, with its cluster, representative and
    the duplicate pair that links it to the cluster. ``manifest`` rows are in path order (ties
    in the preference order go to the earlier row); image ids may be any unique integers."""
    ids = manifest["image_id"].to_numpy()
    order = np.argsort(ids, kind="stable")
    i, j = (order[np.searchsorted(ids[order], pairs[column].to_numpy())] for column in ("image_id_a", "image_id_b"))
    split_rank = with_split_rank(manifest.select("split"), ranks)["rank"].to_numpy()
    pixels = (manifest["width"].cast(pl.Int64) * manifest["height"].cast(pl.Int64)).to_numpy()
    assignment = assign_clusters(split_rank, pixels, i, j)

    def as_ids(positions: np.ndarray) -> np.ndarray:
        return np.where(positions >= 0, ids[np.maximum(positions, 0)], -1)

    members = pl.DataFrame(
        {
            "image_id": ids,
            "representative_id": as_ids(assignment.representative),
            "linked_to_id": as_ids(assignment.linked_to),
            "hops_to_representative": assignment.hops,
            "leaks": assignment.leaks,
            "representative_position": assignment.representative,
        }
    ).filter(pl.col("representative_id") >= 0)
    links = pl.concat(
        [
            pairs.select(
                pl.col("image_id_a").alias("image_id"), pl.col("image_id_b").alias("linked_to_id"), "hamming", "cosine"
            ),
            pairs.select(
                pl.col("image_id_b").alias("image_id"), pl.col("image_id_a").alias("linked_to_id"), "hamming", "cosine"
            ),
        ]
    )
    info = manifest.select("image_id", "path", "split", "label")
    paths = info.select("image_id", "path")
    clustered = (
        members.join(info, on="image_id")
        .join(paths.rename({"image_id": "representative_id", "path": "representative_path"}), on="representative_id")
        .join(paths.rename({"image_id": "linked_to_id", "path": "linked_to"}), on="linked_to_id", how="left")
        .join(links, on=["image_id", "linked_to_id"], how="left")
        .with_columns(
            pl.col("representative_position").rank("dense").cast(pl.Int64).alias("cluster_id"),
            (pl.col("image_id") == pl.col("representative_id")).alias("is_representative"),
            pl.len().over("representative_id").cast(pl.Int64).alias("cluster_size"),
            pl.col("split").unique().sort().str.join(",").over("representative_id").alias("cluster_splits"),
            pl.col("hops_to_representative").max().over("representative_id").alias("max_hops"),
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
        "leaks",
        pl.col("linked_to_id").replace(-1, None),
        "linked_to",
        "hops_to_representative",
        pl.col("hamming").alias("link_hamming"),
        pl.col("cosine").alias("link_cosine"),
        "cluster_size",
        "cluster_splits",
        "max_hops",
    ).sort("cluster_id", "is_representative", "path", descending=[False, True, False])
