"""Leak report and label conflicts, computed from the similar pairs and the manifest."""

from __future__ import annotations

import polars as pl

from dedup_pipeline.lib.decisions.splits import with_split_rank


def directed_pairs(pairs: pl.DataFrame) -> pl.DataFrame:
    """Each unordered pair as two rows ``(image_id, partner_id)``."""
    forward = pairs.select(pl.col("image_id_a").alias("image_id"), pl.col("image_id_b").alias("partner_id"))
    backward = pairs.select(pl.col("image_id_b").alias("image_id"), pl.col("image_id_a").alias("partner_id"))
    return pl.concat([forward, backward])


def _labelled_pairs(manifest: pl.DataFrame, pairs: pl.DataFrame) -> pl.DataFrame:
    side = manifest.select("image_id", "path", "split", "label")
    return pairs.join(side.rename(lambda c: f"{c}_a"), on="image_id_a").join(
        side.rename(lambda c: f"{c}_b"), on="image_id_b"
    )


def leaked_images(manifest: pl.DataFrame, pairs: pl.DataFrame, ranks: dict[str, int]) -> pl.DataFrame:
    """One row per (image, higher-priority split it has a duplicate in), with label agreement."""
    info = with_split_rank(manifest.select("image_id", "split", "label"), ranks)
    directed = (
        directed_pairs(pairs)
        .join(info, on="image_id")
        .join(info.rename(lambda c: f"partner_{c}").rename({"partner_image_id": "partner_id"}), on="partner_id")
    )
    return (
        directed.filter(pl.col("partner_rank") < pl.col("rank"))
        .group_by("image_id", "split", "partner_split")
        .agg(
            pl.len().alias("pairs"),
            (pl.col("label") == pl.col("partner_label")).any().fill_null(False).alias("same_label"),
            (pl.col("label") != pl.col("partner_label")).any().fill_null(False).alias("conflicting_label"),
        )
    )


def leak_report(manifest: pl.DataFrame, leaked: pl.DataFrame, ranks: dict[str, int]) -> pl.DataFrame:
    """For each pair of splits, the images of the evaluation (lower-priority) split that have a
    duplicate in the reference (higher-priority) split. Every split pair gets a row, leaks or not.
    ``leaked`` is the result of :func:`leaked_images`."""
    sizes = manifest.group_by("split").len("eval_images")
    by_rank = sorted(ranks, key=ranks.__getitem__)
    combinations = pl.DataFrame(
        [
            {"eval_split": low, "reference_split": high}
            for position, low in enumerate(by_rank)
            for high in by_rank[:position]
        ],
        schema={"eval_split": pl.String, "reference_split": pl.String},
    )
    leaks = leaked.group_by(pl.col("split").alias("eval_split"), pl.col("partner_split").alias("reference_split")).agg(
        pl.len().alias("leaked_images"),
        pl.col("same_label").sum().alias("same_label_images"),
        pl.col("conflicting_label").sum().alias("conflicting_label_images"),
        pl.col("pairs").sum().alias("leaked_pairs"),
    )
    return (
        combinations.join(sizes, left_on="eval_split", right_on="split", how="left")
        .join(leaks, on=["eval_split", "reference_split"], how="left")
        .with_columns(
            pl.col(c).fill_null(0).cast(pl.Int64)
            for c in ("leaked_images", "same_label_images", "conflicting_label_images", "leaked_pairs")
        )
        .with_columns((pl.col("leaked_images") / pl.col("eval_images")).alias("leaked_fraction"))
        .select(
            "eval_split",
            "reference_split",
            pl.col("eval_images").cast(pl.Int64),
            "leaked_images",
            "leaked_fraction",
            "same_label_images",
            "conflicting_label_images",
            "leaked_pairs",
        )
    )


def leaked_fraction_by_split(manifest: pl.DataFrame, leaked: pl.DataFrame, ranks: dict[str, int]) -> pl.DataFrame:
    """Per evaluation split (every split but the first): images with a duplicate in any
    higher-priority split, and their fraction of the split."""
    per_split = leaked.group_by("split").agg(pl.col("image_id").n_unique().alias("leaked_images"))
    return (
        with_split_rank(manifest.group_by("split").len("images"), ranks)
        .filter(pl.col("rank") > 0)
        .join(per_split, on="split", how="left")
        .with_columns(pl.col("leaked_images").fill_null(0).cast(pl.Int64))
        .with_columns((pl.col("leaked_images") / pl.col("images")).alias("leaked_fraction"))
        .select("split", "images", "leaked_images", "leaked_fraction")
        .sort("split")
    )


def leak_budget_verdict(per_split: pl.DataFrame, budget: float) -> str:
    """What the leak check found, in a sentence: the splits over ``budget`` and by how much (rows of
    :func:`leaked_fraction_by_split`)."""
    over = per_split.filter(pl.col("leaked_fraction") > budget).sort("leaked_fraction", descending=True)
    if over.is_empty():
        worst = per_split.sort("leaked_fraction", descending=True).head(1)
        if worst.is_empty():
            return f"no evaluation split; the budget is {budget:.2%}"
        return f"every evaluation split within the budget of {budget:.2%} (most: {_leaked(worst.row(0, named=True))})"
    described = "; ".join(_leaked(row) for row in over.iter_rows(named=True))
    return f"over the budget of {budget:.2%}: {described}"


def _leaked(row: dict) -> str:
    return f"{row['split']} {row['leaked_fraction']:.2%} ({row['leaked_images']:,} of {row['images']:,} images)"


def label_conflicts(manifest: pl.DataFrame, pairs: pl.DataFrame) -> pl.DataFrame:
    """Duplicate pairs (within or across splits) whose labels differ; unlabelled images excluded."""
    return (
        _labelled_pairs(manifest, pairs)
        .filter(
            pl.col("label_a").is_not_null() & pl.col("label_b").is_not_null() & (pl.col("label_a") != pl.col("label_b"))
        )
        .select("path_a", "path_b", "split_a", "split_b", "label_a", "label_b", "hamming", "cosine", "evidence")
    )
