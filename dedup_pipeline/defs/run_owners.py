"""Runs whose process was killed: released before a command-line run starts.

A process killed with SIGKILL cannot record its run's end in the Dagster instance. Its run stays
"started" and, in an instance that limits the ``duckdb`` pool (``dagster_home/dagster.yaml``), keeps
the pool's one slot, so every later run would wait for that slot forever. So every run a
``dedup-pipeline`` command starts carries its machine and process (:func:`owner_tags`), and before a
command-line run starts it marks the unfinished runs of dead processes of this machine failed and
frees their slots (:func:`release_dead_runs`). Runs the daemon launched are watched by Dagster's
run monitoring instead (enabled in ``dagster_home/dagster.yaml``).
"""

from __future__ import annotations

import socket

import dagster as dg

from dedup_pipeline.lib.runtime.processes import is_running, process_identity

OWNER_HOST_TAG = "dedup/host"
OWNER_PROCESS_TAG = "dedup/process"
UNFINISHED = [
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def owner_tags() -> dict[str, str]:
    return {OWNER_HOST_TAG: socket.gethostname(), OWNER_PROCESS_TAG: process_identity()}


def release_dead_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark failed, and free the concurrency slots of, this machine's unfinished runs whose process
    is gone; return their run ids."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=UNFINISHED, tags={OWNER_HOST_TAG: socket.gethostname()}))
    released = []
    for run in runs:
        owner = run.tags.get(OWNER_PROCESS_TAG, "")
        if not owner or is_running(owner):
            continue
        instance.report_run_failed(run, f"the process that ran it ({owner}) ended without finishing it (killed?)")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        released.append(run.run_id)
    return released
