"""One writer per store at a time, across processes, and DuckDB connections that wait their turn.

DuckDB lets one process at a time hold a database file open for writing, and no other process may
open it then, not even to read: a second connection fails at once with "Could not set lock on
file". Two writers could also interleave: two runs registering the same new files as two drops, or
one run's join reading what another run is halfway through replacing. So:

* every writer (a ``dedup-pipeline run`` for its whole duration, the drop sensor while it registers,
  each Dagster step that writes to the database) holds an exclusive ``flock`` on the store's lock
  file. A second writer waits for it, saying whom it waits for, and fails with a clear message
  after ``wait_seconds``. The kernel releases the lock of a killed process, so a crash never leaves
  the store locked. The lock is re-entrant within a process (a run's own steps take it again).
* every DuckDB connection (readers included) is retried while another process has the file open,
  up to the same wait: a ``check`` during a run gets in between the run's steps, and a run's step
  waits out a ``check``.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from dedup_pipeline.defaults import DEFAULT_WAIT_SECONDS

POLL_SECONDS = 0.2


class StoreBusy(Exception):
    """Another process kept the store or its database busy for longer than the caller would wait;
    ``holder`` says which, as far as known."""

    def __init__(self, message: str, holder: str = "another process") -> None:
        super().__init__(message)
        self.holder = holder


_held: dict[Path, list[int]] = {}  # lock file -> [descriptor, depth] of the locks this process holds
_held_guard = threading.Lock()


def _holder(descriptor: int) -> str:
    """Who holds a lock, as its holder wrote it into the lock file."""
    try:
        return os.pread(descriptor, 4096, 0).decode(errors="replace").strip() or "another process"
    except OSError:
        return "another process"


@contextmanager
def writer_lock(
    lock_file: Path, wait_seconds: float = DEFAULT_WAIT_SECONDS, waiting: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the exclusive write lock of ``lock_file`` for the block, waiting up to ``wait_seconds``
    for another process to release it (``waiting`` is told once whom it waits for); raise
    :class:`StoreBusy` after that. The lock belongs to the process: its threads share it."""
    lock_file = Path(lock_file).resolve()
    with _held_guard:
        if lock_file in _held:
            _held[lock_file][1] += 1
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _held_guard:
                _held[lock_file][1] -= 1
        return
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(descriptor, lock_file, wait_seconds, waiting)
        started = datetime.datetime.now().isoformat(timespec="seconds")
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"pid {os.getpid()} ({' '.join(sys.argv)[:200]}), since {started}\n".encode(), 0)
        with _held_guard:
            _held[lock_file] = [descriptor, 1]
        try:
            yield
        finally:
            with _held_guard:
                del _held[lock_file]
            os.ftruncate(descriptor, 0)
    finally:
        os.close(descriptor)  # releases the lock


def _acquire(descriptor: int, lock_file: Path, wait_seconds: float, waiting: Callable[[str], None] | None) -> None:
    deadline = time.monotonic() + wait_seconds
    told = False
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        if time.monotonic() >= deadline:
            holder = _holder(descriptor)
            raise StoreBusy(
                f"the store is being written by {holder}; gave up after waiting {wait_seconds:g} s "
                f"(lock file {lock_file}). Run again when that run has finished, or wait longer (--wait-seconds).",
                holder,
            )
        if not told and waiting is not None:
            waiting(f"waiting for {_holder(descriptor)} to finish writing the store")
            told = True
        time.sleep(POLL_SECONDS)


def is_lock_conflict(error: BaseException) -> bool:
    """DuckDB's error when another process has the database file open."""
    return isinstance(error, duckdb.IOException) and "lock" in str(error).lower()


def connect(
    database: str | Path,
    read_only: bool = False,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    config: dict[str, object] | None = None,
) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection, retried while another process has the file open (up to ``wait_seconds``)."""
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(database), read_only=read_only, config=config or {})
        except duckdb.IOException as error:
            if not is_lock_conflict(error):
                raise
            if time.monotonic() >= deadline:
                raise StoreBusy(
                    f"{database} stayed open in another process for {wait_seconds:g} s: {error}. "
                    "Run again when that run has finished, or wait longer (--wait-seconds)."
                ) from None
        time.sleep(delay)
        delay = min(delay * 2, 1.0)
