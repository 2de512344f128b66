import subprocess
import sys
from pathlib import Path

import dagster as dg

from dedup_pipeline.defs.run_owners import OWNER_PROCESS_TAG, owner_tags, release_dead_runs
from dedup_pipeline.lib.runtime.processes import process_identity


def _dead_identity() -> str:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    identity = process_identity(process.pid)
    process.wait()
    return identity


def _started_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> dg.DagsterRun:
    run = instance.create_run_for_job(dg.GraphDefinition("g").to_job(), tags=tags)
    instance.handle_run_event(
        run.run_id,
        dg.DagsterEvent(event_type_value=dg.DagsterEventType.RUN_START.value, job_name=run.job_name),
    )
    return run


def _claims_the_slot(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    return instance.event_log_storage.claim_concurrency_slot("duckdb", run.run_id, "similar_pairs").is_claimed


def test_a_killed_commands_run_is_failed_and_its_pool_slot_freed(tmp_path: Path) -> None:
    pools = {"concurrency": {"pools": {"default_limit": 1}}}
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides=pools) as instance:
        instance.event_log_storage.initialize_concurrency_limit_to_default("duckdb")
        dead = _started_run(instance, {**owner_tags(), OWNER_PROCESS_TAG: _dead_identity()})
        alive = _started_run(instance, owner_tags())  # this test's own process
        assert _claims_the_slot(instance, dead)
        assert not _claims_the_slot(instance, alive)  # the pool's one slot is the dead run's: wait forever

        assert release_dead_runs(instance) == [dead.run_id]

        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED
        assert _claims_the_slot(instance, alive)
        assert release_dead_runs(instance) == []
