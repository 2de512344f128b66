"""``python -m dedup_pipeline.stress.sensor_runs``: what the Dagster daemon does for the drop sensor,
in one process: tick the sensor until nothing new is left, and execute every run it requests under
the multiprocess executor (the default of a code location), each step in its own process.

The dataset, database and instance come from ``DEDUP_DATA``, ``DEDUP_DB`` and ``DAGSTER_HOME``.
"""

from __future__ import annotations

import os
import sys
import time

import dagster as dg

from dedup_pipeline.defs import build_definitions
from dedup_pipeline.defs.partitions import DROPS
from dedup_pipeline.defs.resources import DUCKDB_RESOURCE_KEY, DedupConfig, StoreDatabase
from dedup_pipeline.defs.sensors import BUSY_SKIP, drop_sensor

TICK_SECONDS = 1.0


def _definitions() -> dg.Definitions:
    config = DedupConfig(data=os.environ["DEDUP_DATA"], settle_seconds=0)
    return build_definitions(config, os.environ["DEDUP_DB"])


def whole_graph_job() -> dg.JobDefinition:
    """The sensor's target (every asset) as a job under the multiprocess executor."""
    job = dg.define_asset_job(
        "whole_graph", selection=dg.AssetSelection.all(), executor_def=dg.multiprocess_executor, partitions_def=DROPS
    )
    return dg.Definitions.merge(_definitions(), dg.Definitions(jobs=[job])).resolve_job_def("whole_graph")


def main() -> int:
    instance = dg.DagsterInstance.get()
    resources = {
        "dedup": DedupConfig(data=os.environ["DEDUP_DATA"], settle_seconds=0),
        DUCKDB_RESOURCE_KEY: StoreDatabase(database=os.environ["DEDUP_DB"]),
    }
    done: set[str] = set()
    failed = 0
    while True:
        context = dg.build_sensor_context(instance=instance, resources=resources, definitions=_definitions())
        result = drop_sensor(context)
        for request in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        requests = [request for request in result.run_requests or [] if request.run_key not in done]
        if not requests:
            message = result.skip_reason.skip_message if result.skip_reason else ""
            print(f"sensor tick: {message or 'every requested run done'}", flush=True)
            if message.startswith(BUSY_SKIP):
                time.sleep(TICK_SECONDS)
                continue
            return 1 if failed else 0
        for request in requests:
            print(f"sensor run for drop {request.partition_key}", flush=True)
            outcome = dg.execute_job(
                dg.reconstructable(whole_graph_job),
                instance=instance,
                tags={"dagster/partition": request.partition_key},
            )
            print(
                f"sensor run for drop {request.partition_key}: {'success' if outcome.success else 'FAILED'}", flush=True
            )
            failed += not outcome.success
            done.add(request.run_key)


if __name__ == "__main__":
    sys.exit(main())
