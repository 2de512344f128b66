"""The drop sensor: notices new, rewritten and deleted files in the dataset, registers them as a
drop (a dynamic partition), and requests a run that extracts the drop and brings every downstream
asset up to date.

Each tick lists the dataset (one ``scandir`` per folder and one ``stat`` per file, or the manifest's
rows) and compares it with the drops registered in the store, which it reads from the store's
Parquet files (it never opens the database, so it does not wait on a running job). A drop is
registered once it has settled (see ``DedupConfig.settle_seconds``). Runs are requested for every
registered drop that is not extracted yet, with the drop's key as the run key, so a drop whose
registration outlived a crashed tick still gets its run, and no drop gets two. While another
process writes the store (a command-line run, a step of a run), the tick registers nothing and says
so: registering beside a run would register the same changes twice.
"""

import json

import dagster as dg

from dedup_pipeline.defs.partitions import DROPS
from dedup_pipeline.defs.resources import DedupConfig, StoreDatabase, store_of
from dedup_pipeline.lib.inputs.changes import register_changes
from dedup_pipeline.lib.storage.write_lock import StoreBusy, writer_lock

DROP_SENSOR_INTERVAL_SECONDS = 30
BUSY_SKIP = "not registering now"


def drop_run_request(key: str) -> dg.RunRequest:
    return dg.RunRequest(run_key=key, partition_key=key, tags={"dedup/drop": key})


@dg.sensor(
    name="drop_sensor",
    minimum_interval_seconds=DROP_SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Registers new, rewritten and deleted files of the dataset as a drop (partition of the per-image "
        "assets) once they have settled, and runs the pipeline for it: the drop is extracted, joined "
        "against every stored image, and the clusters, leak report, label conflicts and dedup manifest "
        "are brought up to date."
    ),
    target=dg.AssetSelection.all(),
)
def drop_sensor(context: dg.SensorEvaluationContext, dedup: DedupConfig, duckdb: StoreDatabase) -> dg.SensorResult:
    store = store_of(duckdb.database)
    try:
        with writer_lock(store.lock_file, wait_seconds=0):
            registration = register_changes(
                dedup.data, store, settle_seconds=dedup.settle_seconds, allowed_roots=dedup.allowed_roots
            )
    except StoreBusy as busy:
        message = f"{BUSY_SKIP}: the store is being written by {busy.holder}; the next tick looks again"
        return dg.SensorResult(skip_reason=dg.SkipReason(message))
    drops = store.drops()
    known = set(context.instance.get_dynamic_partitions(DROPS.name))
    unknown = [drop.key for drop in drops if drop.key not in known]
    waiting = [drop.key for drop in drops if not store.is_extracted(drop)]
    cursor = json.dumps({"last_drop": drops[-1].key if drops else None, "listed": registration.listed})
    if not waiting:
        deferred = f"; {registration.deferred} changed files not settled yet" if registration.deferred else ""
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                f"no new, rewritten or deleted files in {registration.root} ({registration.listed:,} listed{deferred})"
            ),
            dynamic_partitions_requests=[DROPS.build_add_request(unknown)] if unknown else [],
            cursor=cursor,
        )
    return dg.SensorResult(
        run_requests=[drop_run_request(key) for key in waiting],
        dynamic_partitions_requests=[DROPS.build_add_request(unknown)] if unknown else [],
        cursor=cursor,
    )
