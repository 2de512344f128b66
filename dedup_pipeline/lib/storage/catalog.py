"""The catalog: which version of each input is live, from the drops merged into the database.

Each input (a path, as an image or as a problem) is live in the latest merged drop that has an
event for it, unless that event deleted it. An image's live row is then the one extracted in that
drop (or its failure, if it could not be decoded there). When a merge makes an image id that was
live disappear (the file was deleted, rewritten with other bytes, or no longer decodes), the image
is *retired*: its pairs go with it, and ``retired_images`` keeps the trace (path, split, label,
content digest, when, which drop, why). Nothing leaves the catalog without that row.

A merge is one transaction: the catalog, the retired rows, the drop list and the per-image views
change together, so a reader sees the state before or after a drop, never half of one.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import duckdb
import polars as pl

from dedup_pipeline.lib.inputs.changes import latest
from dedup_pipeline.lib.storage.database import (
    CATALOG_TABLE,
    append_rows,
    create_image_views,
    create_views,
    read_table,
    replace_table,
    table_names,
    transaction,
)
from dedup_pipeline.lib.storage.store import DELETED, IMAGE, SHARD_TABLES, Drop, Store

CATALOG_SCHEMA = {"path": pl.String, "kind": pl.String, "drop_seq": pl.Int64, "image_id": pl.Int64}
RETIRED_SCHEMA = {
    "image_id": pl.Int64,
    "path": pl.String,
    "split": pl.String,
    "label": pl.String,
    "content_sha256": pl.String,
    "drop_seq": pl.Int64,  # the drop the retired version came from
    "retired_by": pl.String,  # the drop that retired it
    "retired_at": pl.Datetime("us"),
    "reason": pl.String,
}
DROP_SCHEMA = {
    "drop_key": pl.String,
    "drop_seq": pl.Int64,
    "added": pl.Int64,
    "changed": pl.Int64,
    "deleted": pl.Int64,
    "status": pl.String,  # registered, extracted, merged
}


def live_catalog(events: pl.DataFrame, manifests: pl.DataFrame) -> pl.DataFrame:
    """Each live input's drop and, for a decoded image, its image id (:data:`CATALOG_SCHEMA`),
    from the merged drops' ``events`` and extracted ``manifests`` (``path, drop_seq, image_id``)."""
    live = (
        latest(events).filter(pl.col("change") != DELETED).select("path", "kind", pl.col("sequence").alias("drop_seq"))
    )
    images = manifests.select("path", "drop_seq", "image_id").with_columns(pl.lit(IMAGE).alias("kind"))
    return (
        live.join(images, on=["path", "kind", "drop_seq"], how="left").select(list(CATALOG_SCHEMA)).sort("path", "kind")
    )


def retirements(previous: pl.DataFrame, current: pl.DataFrame, manifest: pl.DataFrame) -> pl.DataFrame:
    """The images of the ``previous`` catalog whose id is not live in the ``current`` one, with what
    the old ``manifest`` rows said of them and why they went."""
    gone = previous.filter(
        pl.col("image_id").is_not_null() & ~pl.col("image_id").is_in(current["image_id"].drop_nulls().implode())
    )
    now = current.filter(pl.col("kind") == IMAGE).select(
        "path", pl.col("image_id").alias("current_id"), pl.lit(True).alias("listed")
    )
    return (
        gone.join(now, on="path", how="left")
        .join(manifest.select("image_id", "split", "label", "content_sha256"), on="image_id", how="left")
        .with_columns(
            pl.when(pl.col("listed").is_null())
            .then(pl.lit("deleted"))
            .when(pl.col("current_id").is_null())
            .then(pl.lit("changed; the new version could not be decoded"))
            .otherwise(pl.lit("changed: new content"))
            .alias("reason")
        )
    )


@dataclass(frozen=True)
class MergeReport:
    merged: list[str]  # drops merged by this call
    pending: list[str]  # registered, not extracted yet
    live_images: int
    live_failures: int
    retired: int


def merge_drops(connection: duckdb.DuckDBPyConnection, store: Store) -> MergeReport:
    """Bring the catalog, ``retired_images``, the ``drops`` table and the per-image views up to date
    with every extracted drop of ``store``, in one transaction."""
    drops = store.drops()
    extracted = [drop for drop in drops if store.is_extracted(drop)]
    tables = table_names(connection)
    merged_before = (
        set(read_table(connection, "drops").filter(pl.col("status") == "merged")["drop_key"])
        if "drops" in tables
        else set()
    )
    previous = read_table(connection, CATALOG_TABLE) if CATALOG_TABLE in tables else pl.DataFrame(schema=CATALOG_SCHEMA)
    old_manifest = read_table(connection, "image_manifest") if "image_manifest" in _views(connection) else None
    events = store.events(extracted)
    manifests = (
        store.read_shard_table(extracted, "manifest", ["path", "drop_seq", "image_id"])
        if extracted
        else pl.DataFrame(schema={"path": pl.String, "drop_seq": pl.Int64, "image_id": pl.Int64})
    )
    catalog = live_catalog(events, manifests)
    newly = [drop for drop in extracted if drop.key not in merged_before]  # merged by this call
    retired = pl.DataFrame(schema=RETIRED_SCHEMA)
    if old_manifest is not None:
        # the drop that retired an image: its path's latest event (a deletion or a new version)
        keys = {drop.sequence: drop.key for drop in drops}
        retiring = (
            latest(events)
            .filter(pl.col("kind") == IMAGE)
            .select("path", pl.col("sequence").replace_strict(keys, return_dtype=pl.String).alias("retired_by"))
        )
        retired = (
            retirements(previous, catalog, old_manifest)
            .join(retiring, on="path", how="left")
            .with_columns(pl.lit(datetime.datetime.now()).alias("retired_at"))
            .select(list(RETIRED_SCHEMA))
            .cast(RETIRED_SCHEMA)
        )
    with transaction(connection):
        replace_table(connection, CATALOG_TABLE, catalog)
        if retired.height or "retired_images" not in tables:
            append_rows(connection, "retired_images", retired)
        replace_table(connection, "drops", _drop_table(store, drops, extracted))
        if extracted:
            create_image_views(
                connection,
                {table: [str(store.shard_file(drop, table)) for drop in extracted] for table in SHARD_TABLES},
            )
            create_views(connection, ["image_errors"])
    images = catalog.filter(pl.col("image_id").is_not_null()).height
    return MergeReport(
        merged=[drop.key for drop in newly],
        pending=[drop.key for drop in drops if drop not in extracted],
        live_images=images,
        live_failures=catalog.height - images,
        retired=retired.height,
    )


def _views(connection: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        name for (name,) in connection.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }


def _drop_table(store: Store, drops: list[Drop], extracted: list[Drop]) -> pl.DataFrame:
    events = store.events(drops)
    counts = events.group_by("sequence").agg(
        *[(pl.col("change") == change).sum().alias(change) for change in ("added", "changed", "deleted")]
    )
    rows = pl.DataFrame(
        {
            "drop_key": [drop.key for drop in drops],
            "drop_seq": [drop.sequence for drop in drops],
            "status": ["merged" if drop in extracted else "registered" for drop in drops],
        },
        schema={"drop_key": pl.String, "drop_seq": pl.Int64, "status": pl.String},
    )
    return (
        rows.join(counts.rename({"sequence": "drop_seq"}), on="drop_seq", how="left")
        .select(list(DROP_SCHEMA))
        .cast(DROP_SCHEMA)
    )
