"""Keep or drop each decodable image, with the reason.

The clusters (see :mod:`dedup_pipeline.lib.decisions.clustering`) are built for this rule, so the policy
is a reading of them (the split priority, which is configurable, decides which split keeps):

* ``unique`` (keep): the image has no duplicate;
* ``representative`` (keep): the kept image of a duplicate cluster;
* ``leak`` (drop): the image duplicates an image of a higher-priority split (``duplicate_of``);
* ``duplicate`` (drop): the image duplicates an image of its own split (``duplicate_of``) and is
  not its cluster's representative.

Guarantees, re-checked by :func:`guarantee_violations`: no two kept images are duplicates of each
other (so none has a duplicate in another split), each cluster keeps exactly one image, and
every dropped image names a real duplicate in ``duplicate_of``.
"""

from __future__ import annotations

import polars as pl

KEEP_REASONS = ("unique", "representative")


def decide(manifest: pl.DataFrame, clusters: pl.DataFrame) -> pl.DataFrame:
    decided = (
        manifest.select("image_id", "path", "split", "label")
        .join(
            clusters.select("image_id", "cluster_id", "is_representative", "leaks", "linked_to_id"),
            on="image_id",
            how="left",
        )
        .with_columns(
            pl.when(pl.col("cluster_id").is_null())
            .then(pl.lit("unique"))
            .when(pl.col("is_representative"))
            .then(pl.lit("representative"))
            .when(pl.col("leaks"))
            .then(pl.lit("leak"))
            .otherwise(pl.lit("duplicate"))
            .alias("reason")
        )
        .with_columns(pl.col("reason").is_in(KEEP_REASONS).alias("keep"))
    )
    partners = manifest.select(
        pl.col("image_id").alias("linked_to_id"),
        pl.col("path").alias("duplicate_of"),
        pl.col("split").alias("duplicate_of_split"),
    )
    return (
        decided.join(partners, on="linked_to_id", how="left")
        .select(
            "image_id", "path", "split", "label", "keep", "reason", "duplicate_of", "duplicate_of_split", "cluster_id"
        )
        .sort("path")
    )


def guarantee_violations(decisions: pl.DataFrame, pairs: pl.DataFrame) -> dict[str, int]:
    """Counts of broken promises (all zero when the policy holds)."""
    kept = decisions.filter(pl.col("keep")).select("image_id")
    kept_pairs = pairs.join(kept.rename({"image_id": "image_id_a"}), on="image_id_a").join(
        kept.rename({"image_id": "image_id_b"}), on="image_id_b"
    )
    kept_per_cluster = (
        decisions.filter(pl.col("cluster_id").is_not_null()).group_by("cluster_id").agg(pl.col("keep").sum())
    )
    paths = decisions.select("image_id", "path")
    pair_paths = (
        pairs.join(paths.rename({"image_id": "image_id_a", "path": "path_a"}), on="image_id_a")
        .join(paths.rename({"image_id": "image_id_b", "path": "path_b"}), on="image_id_b")
        .select("path_a", "path_b")
    )
    known = pl.concat(
        [pair_paths, pair_paths.select(pl.col("path_b").alias("path_a"), pl.col("path_a").alias("path_b"))]
    )
    dropped = decisions.filter(~pl.col("keep")).select(
        pl.col("path").alias("path_a"), pl.col("duplicate_of").alias("path_b")
    )
    return {
        "kept_duplicate_pairs": kept_pairs.height,
        "clusters_not_keeping_exactly_one": kept_per_cluster.filter(pl.col("keep") != 1).height,
        "drops_without_a_real_duplicate": dropped.join(known, on=["path_a", "path_b"], how="anti").height,
    }
