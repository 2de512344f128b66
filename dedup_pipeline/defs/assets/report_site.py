"""The HTML report: written after every run or drop, linked from its materialization."""

import dagster as dg

from dedup_pipeline.defs import groups
from dedup_pipeline.defs.metadata import timed
from dedup_pipeline.defs.resources import DUCKDB_POOL, StoreDatabase
from dedup_pipeline.lib.reporting.html_report import report_folder_of, report_from_database


@dg.asset(
    group_name=groups.REPORTS,
    deps=["leak_report", "label_conflicts", "dedup_manifest"],
    description=(
        "A static HTML report beside the database (<database>.report/index.html): the summary, every leak with "
        "both thumbnails, label conflicts by cluster and the clusters within a split, with filters and pages."
    ),
    kinds={"html"},
    pool=DUCKDB_POOL,
)
def html_report(duckdb: StoreDatabase) -> dg.MaterializeResult:
    timings: dict[str, object] = {}
    with duckdb.get_connection() as connection, timed(timings, "seconds"):
        index, tables = report_from_database(connection, report_folder_of(duckdb.database), duckdb.database)
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.path(str(index)),
            "leaked_pairs": tables.leaks.height,
            "label_conflicts": tables.conflicts.height,
            "images_shown": len(tables.image_ids()),
            **timings,
        }
    )
