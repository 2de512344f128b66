"""Reports: leak report (with the leak budget check), label conflicts, deduplicated manifest."""

import dagster as dg

from dedup_pipeline.defs import groups
from dedup_pipeline.defs.metadata import preview, table_metadata, timed
from dedup_pipeline.defs.resources import DUCKDB_POOL, DedupConfig, StoreDatabase
from dedup_pipeline.lib.decisions.dedup_policy import decide, guarantee_violations
from dedup_pipeline.lib.decisions.reports import label_conflicts as find_label_conflicts
from dedup_pipeline.lib.decisions.reports import leak_budget_verdict, leaked_fraction_by_split, leaked_images
from dedup_pipeline.lib.decisions.reports import leak_report as build_leak_report
from dedup_pipeline.lib.decisions.splits import split_ranks
from dedup_pipeline.lib.reporting.html_report import report_folder_of
from dedup_pipeline.lib.storage.database import create_views, read_manifest, read_table, write_table

LEAK_CHECK = "leak_budget"
GUARANTEE_CHECK = "no_leaks_among_kept"


@dg.asset(
    group_name=groups.REPORTS,
    deps=["similar_pairs"],
    description=(
        "For each pair of splits, the images of the evaluation (lower-priority) split that have a "
        "duplicate in the reference split: count, fraction of the split, how many share the label "
        "and how many conflict with it. Every split pair has a row, leaks or not."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            LEAK_CHECK,
            asset="leak_report",
            description=(
                "Fails when an evaluation split has more than max_leaked_fraction of its images duplicated "
                "in a higher-priority split. Non-blocking: the dedup manifest is still written."
            ),
        )
    ],
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
)
def leak_report(dedup: DedupConfig, duckdb: StoreDatabase):
    timings: dict[str, object] = {}
    with duckdb.get_connection() as connection, timed(timings, "seconds"):
        manifest = read_manifest(connection)
        pairs = read_table(connection, "similar_pairs")
        ranks = split_ranks(manifest["split"], dedup.split_priority)
        leaked = leaked_images(manifest, pairs, ranks)
        report = build_leak_report(manifest, leaked, ranks)
        write_table(connection, "leak_report", report)
    per_split = leaked_fraction_by_split(manifest, leaked, ranks)
    worst = float(per_split["leaked_fraction"].max() or 0.0)
    yield dg.MaterializeResult(
        metadata={
            **table_metadata(report, duckdb.database, "leak_report"),
            **timings,
            "split_order": ", ".join(sorted(ranks, key=ranks.__getitem__)),
            "leaked_images": int(per_split["leaked_images"].sum()),
            "leaked_pairs": int(report["leaked_pairs"].sum()),
            # written by html_report, next in the same run
            "leaks_page": dg.MetadataValue.path(str(report_folder_of(duckdb.database) / "leaks.html")),
        }
    )
    yield dg.AssetCheckResult(
        check_name=LEAK_CHECK,
        passed=worst <= dedup.max_leaked_fraction,
        severity=dg.AssetCheckSeverity.ERROR,
        description=leak_budget_verdict(per_split, dedup.max_leaked_fraction),
        metadata={
            "worst_leaked_fraction": worst,
            "max_leaked_fraction": dedup.max_leaked_fraction,
            "per_split": preview(per_split),
        },
    )


@dg.asset(
    group_name=groups.REPORTS,
    deps=["similar_pairs"],
    description=(
        "Duplicate pairs (within or across splits) whose labels differ: one of the two labels is probably wrong."
    ),
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
)
def label_conflicts(duckdb: StoreDatabase) -> dg.MaterializeResult:
    timings: dict[str, object] = {}
    with duckdb.get_connection() as connection, timed(timings, "seconds"):
        conflicts = find_label_conflicts(read_manifest(connection), read_table(connection, "similar_pairs"))
        write_table(connection, "label_conflicts", conflicts)
    return dg.MaterializeResult(metadata={**table_metadata(conflicts, duckdb.database, "label_conflicts"), **timings})


@dg.asset(
    group_name=groups.REPORTS,
    deps=["duplicate_clusters"],
    description=(
        "Every decodable image with keep/drop and the reason: unique or representative (kept), leak "
        "(duplicates an image of a higher-priority split) or duplicate (duplicates an image of its own "
        "split). Dropped images name that duplicate (duplicate_of). Each cluster keeps exactly its "
        "representative, so no two kept images are duplicates, within or across splits. "
        "Table dedup_decisions; view dedup_manifest."
    ),
    check_specs=[
        dg.AssetCheckSpec(
            GUARANTEE_CHECK,
            asset="dedup_manifest",
            description=(
                "Re-checks the manifest's promises: no two kept images are duplicates, each cluster keeps "
                "exactly one image, every dropped image names a real duplicate."
            ),
        )
    ],
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
)
def dedup_manifest(dedup: DedupConfig, duckdb: StoreDatabase):
    timings: dict[str, object] = {}
    with duckdb.get_connection() as connection, timed(timings, "seconds"):
        manifest = read_manifest(connection)
        pairs = read_table(connection, "similar_pairs")
        clusters = read_table(connection, "duplicate_clusters")
        decisions = decide(manifest, clusters)
        write_table(connection, "dedup_decisions", decisions)
        create_views(connection, ["dedup_manifest"])
    counts = decisions.group_by("split", "reason").len().sort("split", "reason")
    violations = guarantee_violations(decisions, pairs)
    yield dg.MaterializeResult(
        metadata={
            **table_metadata(
                decisions.filter(~decisions["keep"]), duckdb.database, "dedup_decisions (dropped rows shown)"
            ),
            "dagster/row_count": decisions.height,
            **timings,
            "kept": int(decisions["keep"].sum()),
            "dropped": int((~decisions["keep"]).sum()),
            "by_split_and_reason": preview(counts),
        }
    )
    broken = ", ".join(f"{name.replace('_', ' ')}: {count:,}" for name, count in violations.items() if count)
    yield dg.AssetCheckResult(
        check_name=GUARANTEE_CHECK,
        passed=not broken,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"broken: {broken}" if broken else "every promise holds",
        metadata=violations,
    )
