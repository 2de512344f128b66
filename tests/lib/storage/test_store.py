import os
import socket
import subprocess
import sys
from pathlib import Path

import polars as pl

from dedup_pipeline.lib.storage.store import EVENT_SCHEMA, SHARD_TABLES, TEMPORARY_PREFIX, Store, write_parquet


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_temporaries_of_killed_writers_on_this_machine_are_removed_by_the_next_writer(tmp_path: Path) -> None:
    final = tmp_path / "table.parquet"
    host = socket.gethostname()
    abandoned = tmp_path / f"{TEMPORARY_PREFIX}table.parquet.{host}.{_dead_pid()}.0badc0de"
    live = tmp_path / f"{TEMPORARY_PREFIX}table.parquet.{host}.{os.getpid()}.1badc0de"
    elsewhere = tmp_path / f"{TEMPORARY_PREFIX}table.parquet.other-host.example.{_dead_pid()}.2badc0de"
    unrelated = tmp_path / f"{TEMPORARY_PREFIX}other.parquet.{host}.{_dead_pid()}.3badc0de"
    for path in (abandoned, live, elsewhere, unrelated):
        path.write_bytes(b"half written")
    write_parquet(pl.DataFrame({"x": [1]}), final)
    assert pl.read_parquet(final)["x"].to_list() == [1]
    assert not abandoned.exists()
    assert live.exists() and elsewhere.exists() and unrelated.exists()


def test_an_abandoned_shard_folder_goes_when_the_drop_is_written_again(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.store")
    drop = store.register("d", pl.DataFrame(schema=EVENT_SCHEMA))
    final = store.shard_folder(drop)
    abandoned = final.with_name(f"{TEMPORARY_PREFIX}{final.name}.{socket.gethostname()}.{_dead_pid()}.0badc0de")
    abandoned.mkdir(parents=True)
    (abandoned / "manifest.parquet").write_bytes(b"half written")
    store.write_shard(drop, {name: pl.DataFrame({"x": [1]}) for name in SHARD_TABLES})
    assert store.is_extracted(drop) and not abandoned.exists()
