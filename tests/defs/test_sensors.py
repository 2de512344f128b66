"""The drop sensor, evaluated as Dagster evaluates it (``build_sensor_context``)."""

import datetime
import json
import os
from pathlib import Path

import dagster as dg
import polars as pl

from dedup_pipeline.defs import defs
from dedup_pipeline.defs.partitions import DROPS
from dedup_pipeline.defs.resources import DUCKDB_RESOURCE_KEY, DedupConfig, StoreDatabase
from dedup_pipeline.defs.sensors import drop_sensor
from dedup_pipeline.lib.storage.store import SHARD_TABLES, Store
from tests.conftest import encoded, hold_store_lock, smooth_picture, stop_holder


def write(path: Path, seed: int, age_seconds: float = 3600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encoded(smooth_picture(seed), "PNG"))
    stamp = datetime.datetime.now().timestamp() - age_seconds
    os.utime(path, (stamp, stamp))


def evaluate(instance: dg.DagsterInstance, root: Path, database: Path, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "dedup": DedupConfig(data=str(root), settle_seconds=60),
            DUCKDB_RESOURCE_KEY: StoreDatabase(database=str(database)),
        },
        definitions=defs,
    )
    result = drop_sensor(context)
    for request in result.dynamic_partitions_requests or []:  # as the daemon applies them
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def test_a_new_drop_gives_a_partition_and_a_run_nothing_new_gives_a_reason(tmp_path: Path) -> None:
    root, database = tmp_path / "data", tmp_path / "db.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    write(root / "train/a/0.png", 0)
    write(root / "test/a/1.png", 1)
    first = evaluate(instance, root, database, None)
    assert [request.partition_key for request in first.run_requests] == ["000001-initial"]
    assert first.run_requests[0].run_key == "000001-initial"  # one run per drop, however often it is asked for
    assert instance.get_dynamic_partitions(DROPS.name) == ["000001-initial"]
    assert json.loads(first.cursor)["last_drop"] == "000001-initial"

    store = Store.beside(database)  # extracted now, as the drop's run would
    store.write_shard(store.drops()[0], {name: pl.DataFrame() for name in SHARD_TABLES})
    nothing = evaluate(instance, root, database, first.cursor)
    assert not nothing.run_requests and "no new, rewritten or deleted files" in nothing.skip_reason.skip_message
    assert "2 listed" in nothing.skip_reason.skip_message

    write(root / "test/b/2.png", 2)  # grown in place, settled
    grown = evaluate(instance, root, database, nothing.cursor)
    (key,) = [request.partition_key for request in grown.run_requests]
    assert key.startswith("000002-tree-") and json.loads(grown.cursor)["last_drop"] == key
    assert grown.cursor != nothing.cursor


def test_a_half_copied_drop_waits_for_its_marker_or_a_quiet_period(tmp_path: Path) -> None:
    root, database = tmp_path / "data", tmp_path / "db.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    write(root / "train/a/0.png", 0)
    evaluate(instance, root, database, None)
    delivery = root / "drops" / "2026-11-29"
    write(delivery / "test/a/1.png", 1, age_seconds=0)  # still being copied
    waiting = evaluate(instance, root, database, None)
    assert [request.partition_key for request in waiting.run_requests] == ["000001-initial"]  # not extracted yet
    assert len(Store.beside(database).drops()) == 1
    (delivery / "_SUCCESS").touch()  # the copy is complete
    ready = evaluate(instance, root, database, waiting.cursor)
    assert "000002-2026-11-29" in [request.partition_key for request in ready.run_requests]
    write(root / "train/a/fresh.png", 3, age_seconds=0)  # a file still being written in place
    later = evaluate(instance, root, database, ready.cursor)
    assert len(Store.beside(database).drops()) == 2 and later.run_requests  # the same two drops wait for runs


def test_while_another_process_writes_the_store_the_sensor_registers_nothing(tmp_path: Path) -> None:
    root, database = tmp_path / "data", tmp_path / "db.duckdb"
    write(root / "train/a/0.png", 0)
    holder = hold_store_lock(Store.beside(database).lock_file, 60)
    try:
        busy = evaluate(dg.DagsterInstance.ephemeral(), root, database, None)
    finally:
        stop_holder(holder)
    assert not busy.run_requests and f"pid {holder.pid}" in busy.skip_reason.skip_message
    assert Store.beside(database).drops() == []
    after = evaluate(dg.DagsterInstance.ephemeral(), root, database, None)
    assert [request.partition_key for request in after.run_requests] == ["000001-initial"]
