"""The catalog of live images: every extracted drop merged into the database's views."""

import dagster as dg

from dedup_pipeline.defs import groups
from dedup_pipeline.defs.metadata import preview, timed
from dedup_pipeline.defs.resources import DUCKDB_POOL, StoreDatabase, store_of
from dedup_pipeline.lib.storage.catalog import merge_drops
from dedup_pipeline.lib.storage.database import read_table

PER_IMAGE_ASSETS = ["image_manifest", "image_hashes", "image_thumbnails", "image_embeddings"]


@dg.asset(
    group_name=groups.CATALOG,
    deps=PER_IMAGE_ASSETS,
    description=(
        "Which version of each input is live, over every extracted drop: an input's latest event wins, "
        "a deleted input leaves, a file rewritten in place replaces its old version. The views "
        "image_manifest, image_hashes, image_thumbnails, image_embeddings and image_failures read the "
        "drops' Parquet files through it; images that stop being live are recorded in retired_images "
        "(path, split, label, old content digest, when, which drop, why); table drops lists every drop."
    ),
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
)
def image_catalog(context: dg.AssetExecutionContext, duckdb: StoreDatabase) -> dg.MaterializeResult:
    store = store_of(duckdb.database)
    timings: dict[str, object] = {}
    with duckdb.get_connection() as connection, timed(timings, "seconds"):
        report = merge_drops(connection, store)
        retired = read_table(connection, "retired_images", order_by="retired_at DESC").head(20)
    if report.pending:
        context.log.warning(f"drops registered but not extracted yet: {', '.join(report.pending)}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": report.live_images,
            "merged_drops": ", ".join(report.merged) or "none new",
            "pending_drops": ", ".join(report.pending) or "none",
            "failures": report.live_failures,
            "retired_now": report.retired,
            "recently_retired": preview(retired),
            **timings,
        }
    )
