"""Whether a process that left something behind (a run record, a temporary file) still runs.

A process id alone can be reused by an unrelated process after the first one died, so a process is
identified by its id and its start time (from ``/proc``, where there is one).
"""

from __future__ import annotations

import os
from pathlib import Path


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None without /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name before it may contain spaces


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_identity(pid: int | None = None) -> str:
    """``<pid>`` or ``<pid>:<start time>`` of a process (default: this one)."""
    pid = os.getpid() if pid is None else pid
    started = _start_time(pid)
    return f"{pid}:{started}" if started else str(pid)


def is_running(identity: str) -> bool:
    """Whether the process of a :func:`process_identity` still runs (not a later one with its id)."""
    pid_text, _, started = identity.partition(":")
    if not pid_text.isdigit() or not is_alive(int(pid_text)):
        return False
    return not started or _start_time(int(pid_text)) in (None, started)
