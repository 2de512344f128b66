import threading
import time
from pathlib import Path

import duckdb
import pytest

from dedup_pipeline.lib.storage.write_lock import StoreBusy, connect, writer_lock
from tests.conftest import hold_store_lock, start_holder, stop_holder


def test_a_second_writer_is_told_who_holds_the_lock_and_gives_up_after_its_wait(tmp_path: Path) -> None:
    holder = hold_store_lock(tmp_path / "write.lock", 60)
    try:
        told: list[str] = []
        started = time.monotonic()
        with (
            pytest.raises(StoreBusy, match=f"pid {holder.pid}"),
            writer_lock(tmp_path / "write.lock", 0.5, told.append),
        ):
            pass
        assert time.monotonic() - started >= 0.5
        assert told and f"pid {holder.pid}" in told[0]
    finally:
        stop_holder(holder)


def test_a_second_writer_waits_for_the_first_to_finish(tmp_path: Path) -> None:
    holder = hold_store_lock(tmp_path / "write.lock", 1.0)
    try:
        started = time.monotonic()
        with writer_lock(tmp_path / "write.lock", 30):
            assert holder.poll() is not None or time.monotonic() - started > 0.5
    finally:
        stop_holder(holder)


def test_a_killed_writer_leaves_the_store_unlocked(tmp_path: Path) -> None:
    holder = hold_store_lock(tmp_path / "write.lock", 60)
    stop_holder(holder)  # SIGKILL: no clean-up ran
    with writer_lock(tmp_path / "write.lock", 0):
        pass


def test_the_lock_is_reentrant_in_a_process(tmp_path: Path) -> None:
    with writer_lock(tmp_path / "write.lock", 0), writer_lock(tmp_path / "write.lock", 0):
        pass
    with writer_lock(tmp_path / "write.lock", 0):  # released after the outer block
        pass


def test_a_connection_waits_while_another_process_has_the_database_open(tmp_path: Path) -> None:
    database = tmp_path / "db.duckdb"
    duckdb.connect(str(database)).close()
    holder = start_holder(f"""
        import time, duckdb
        connection = duckdb.connect({str(database)!r})
        print("ready", flush=True)
        time.sleep(1.0)
        connection.close()
    """)
    try:
        with pytest.raises(duckdb.IOException, match="lock"):
            duckdb.connect(str(database), read_only=True)
        started = time.monotonic()
        connection = connect(database, read_only=True, wait_seconds=30)
        connection.close()
        assert 0.3 < time.monotonic() - started < 30
    finally:
        stop_holder(holder)


def test_a_connection_gives_up_with_a_clear_error(tmp_path: Path) -> None:
    database = tmp_path / "db.duckdb"
    holder = start_holder(f"""
        import time, duckdb
        connection = duckdb.connect({str(database)!r})
        print("ready", flush=True)
        time.sleep(60)
    """)
    try:
        with pytest.raises(StoreBusy, match="stayed open in another process for 0.5 s"):
            connect(database, wait_seconds=0.5)
    finally:
        stop_holder(holder)


def test_threads_of_one_process_share_its_lock(tmp_path: Path) -> None:
    entered = threading.Event()

    def nested() -> None:
        with writer_lock(tmp_path / "write.lock", 0):
            entered.set()

    with writer_lock(tmp_path / "write.lock", 0):
        thread = threading.Thread(target=nested)
        thread.start()
        thread.join(5)
    assert entered.is_set()
