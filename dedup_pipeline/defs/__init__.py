"""Dagster definitions: ``dagster dev -w workspace.yaml`` loads :data:`defs`.

The dataset and database come from the environment at load time (``DEDUP_DATA``, ``DEDUP_DB``)
and can be changed per run in the launchpad (resource ``dedup``). The drop sensor watches the
dataset and runs the pipeline for each new drop.
"""

from __future__ import annotations

import os

import dagster as dg

from dedup_pipeline.defs.assets.catalog import image_catalog
from dedup_pipeline.defs.assets.images import image_features
from dedup_pipeline.defs.assets.report_site import html_report
from dedup_pipeline.defs.assets.reports import dedup_manifest, label_conflicts, leak_report
from dedup_pipeline.defs.assets.similarity import duplicate_clusters, similar_pairs
from dedup_pipeline.defs.assets.thresholds import match_thresholds
from dedup_pipeline.defs.resources import DUCKDB_RESOURCE_KEY, DedupConfig, StoreDatabase, default_database
from dedup_pipeline.defs.sensors import drop_sensor

PER_DROP_ASSETS = [image_features]
GLOBAL_ASSETS = [
    image_catalog,
    match_thresholds,
    similar_pairs,
    duplicate_clusters,
    leak_report,
    label_conflicts,
    dedup_manifest,
    html_report,
]
ASSETS = [*PER_DROP_ASSETS, *GLOBAL_ASSETS]
DEFAULT_DATA = "demo_data/images"


def build_definitions(dedup: DedupConfig, database: str) -> dg.Definitions:
    return dg.Definitions(
        assets=ASSETS,
        sensors=[drop_sensor],
        resources={"dedup": dedup, DUCKDB_RESOURCE_KEY: StoreDatabase(database=database)},
    )


defs = build_definitions(
    DedupConfig(data=os.path.abspath(os.environ.get("DEDUP_DATA", DEFAULT_DATA))),
    database=default_database(),
)
