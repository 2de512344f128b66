"""Keep or drop each decodable image, with the reason.

Policy (the split priority is configurable; by default train keeps, evaluation splits drop):

* ``leak`` (drop): the image duplicates an image of a higher-priority split;
* ``duplicate`` (drop): the image duplicates its cluster's kept image in the same split;
* ``representative`` (keep): the kept image of a duplicate cluster;
* ``unique`` (keep): the image has no duplicate.

Guarantees, checked by :func:`guarantee_violations`: no kept image has a duplicate in another
split, and each cluster keeps at most one image, so no cluster spans two splits among kept
images and each split keeps one image per cluster.
"""

from __future__ import annotations

import polars as pl

from dedup_pipeline.lib.pairs import directed_pairs

KEEP_REASONS = ("unique", "representative")


def decide(manifest: pl.DataFrame, pairs: pl.DataFrame, clusters: pl.DataFrame, ranks: dict[str, int]) -> pl.DataFrame:
    images = manifest.select(
        "image_id",
        "path",
        "split",
        "label",
        (pl.col("width").cast(pl.Int64) * pl.col("height").cast(pl.Int64)).alias("pixels"),
        pl.col("split").replace_strict(ranks, return_dtype=pl.Int64).alias("rank"),
    ).join(
        clusters.select("image_id", "cluster_id", "representative_id", "is_representative"), on="image_id", how="left"
    )

    # An image leaks when it has a partner in a higher-priority split; name the best such partner
    # (a cluster representative if there is one, then the highest-priority split, then path order).
    partners = directed_pairs(pairs).join(
        images.select(
            pl.col("image_id").alias("partner_id"),
            pl.col("rank").alias("partner_rank"),
            pl.col("is_representative").fill_null(False).alias("partner_is_representative"),
        ),
        on="partner_id",
    )
    leak_partner = (
        partners.join(images.select("image_id", "rank"), on="image_id")
        .filter(pl.col("partner_rank") < pl.col("rank"))
        .sort(
            "image_id",
            "partner_is_representative",
            "partner_rank",
            "partner_id",
            descending=[False, True, False, False],
        )
        .group_by("image_id", maintain_order=True)
        .first()
        .select("image_id", pl.col("partner_id").alias("leak_partner_id"))
    )
    images = images.join(leak_partner, on="image_id", how="left").with_columns(
        pl.col("leak_partner_id").is_not_null().alias("leaked")
    )

    # Within a cluster, the representative keeps; if it leaked, the largest non-leaked member
    # of its split keeps instead (members other than the representative share its split unless
    # they leaked).
    keeper = (
        images.filter(pl.col("cluster_id").is_not_null() & ~pl.col("leaked"))
        .sort("cluster_id", "is_representative", "pixels", "image_id", descending=[False, True, True, False])
        .group_by("cluster_id", maintain_order=True)
        .first()
        .select("cluster_id", pl.col("image_id").alias("keeper_id"))
    )
    images = images.join(keeper, on="cluster_id", how="left")

    decided = images.with_columns(
        pl.when(pl.col("leaked"))
        .then(pl.lit("leak"))
        .when(pl.col("cluster_id").is_null())
        .then(pl.lit("unique"))
        .when(pl.col("image_id") == pl.col("keeper_id"))
        .then(pl.lit("representative"))
        .otherwise(pl.lit("duplicate"))
        .alias("reason"),
        pl.when(pl.col("leaked"))
        .then(pl.col("leak_partner_id"))
        .when(pl.col("image_id") != pl.col("keeper_id"))
        .then(pl.col("keeper_id"))
        .alias("duplicate_of_id"),
    ).with_columns(pl.col("reason").is_in(KEEP_REASONS).alias("keep"))

    names = manifest.select(
        pl.col("image_id").alias("duplicate_of_id"),
        pl.col("path").alias("duplicate_of"),
        pl.col("split").alias("duplicate_of_split"),
    )
    return (
        decided.join(names, on="duplicate_of_id", how="left")
        .select(
            "image_id", "path", "split", "label", "keep", "reason", "duplicate_of", "duplicate_of_split", "cluster_id"
        )
        .sort("image_id")
    )


def guarantee_violations(decisions: pl.DataFrame, pairs: pl.DataFrame) -> dict[str, int]:
    """Counts of broken promises among kept images (all zero when the policy holds)."""
    kept = decisions.filter(pl.col("keep")).select("image_id", "split", "cluster_id")
    kept_pairs = pairs.join(
        kept.rename({"image_id": "image_id_a", "split": "split_a", "cluster_id": "c_a"}), on="image_id_a"
    ).join(kept.rename({"image_id": "image_id_b", "split": "split_b", "cluster_id": "c_b"}), on="image_id_b")
    per_cluster = kept.filter(pl.col("cluster_id").is_not_null()).group_by("cluster_id").len()
    return {
        "kept_cross_split_pairs": kept_pairs.filter(pl.col("split_a") != pl.col("split_b")).height,
        "clusters_keeping_more_than_one": per_cluster.filter(pl.col("len") > 1).height,
    }
