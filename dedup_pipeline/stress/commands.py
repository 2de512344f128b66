"""Commands as a user starts them: each in its own process group (so a kill takes its workers too),
logging to a file, and what their logs say went wrong."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# Dagster's console lines name the step: "... - dagster - INFO - <job> - <run id> - <step> - <message>"
_STEP_LINE = re.compile(r" - dagster - \w+ - \S+ - [0-9a-f-]{36} - (\w+) - (.*)")
# what the logs of runs and checks may say: errors (the targets are 0) and expected waiting
EVENT_KINDS = {
    "error: DuckDB lock error": re.compile(r"Could not set lock|Conflicting lock"),
    "error: gave up waiting for another process": re.compile(
        r"(?m)^(error|run failed): .*(gave up after waiting|stayed open in another process)"
    ),
    "error: Python traceback": re.compile(r"Traceback \(most recent call last\)"),
    "error: database unreadable": re.compile(r"(?i)database file .* corrupt|Serialization Error|INTERNAL Error"),
    "waited: a run for another run to finish writing": re.compile(r"(?m)^waiting for pid \d+"),
    "waited: a sensor tick deferred while another process wrote": re.compile(r"sensor tick: not registering now"),
}


def dedup_command() -> list[str]:
    return [str(Path(sys.executable).with_name("dedup-pipeline"))]


@dataclass
class Started:
    process: subprocess.Popen
    log: Path
    at: float

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start(command: list[str], log: Path, environment: dict[str, str] | None = None) -> Started:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(environment or {})},
        )
    return Started(process, log, time.monotonic())


def kill(started: Started) -> None:
    """SIGKILL the command and every process of its group (its decode workers), and reap it."""
    try:
        os.killpg(started.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    started.process.wait()


def finish(started: Started, timeout: float = 3_600) -> int:
    try:
        return started.process.wait(timeout=timeout)
    finally:
        if started.process.poll() is None:
            kill(started)


def landed(log_text: str) -> str:
    """Where a killed run was: the step and message of its last Dagster log line, or start-up."""
    steps = _STEP_LINE.findall(log_text)
    if not steps:
        return "start-up or registration (no step had logged)"
    step, message = steps[-1]
    return f"{step}: {message.strip()[:70]}"


def event_kinds(log_text: str) -> Counter:
    return Counter({kind: len(pattern.findall(log_text)) for kind, pattern in EVENT_KINDS.items()})


def kill_when(started: Started, marker: re.Pattern[str] | None, delay: float, timeout: float = 3_600) -> str:
    """Kill ``started`` ``delay`` seconds after its log first matches ``marker`` (after its start
    when ``marker`` is None); what happened, when it finished first."""
    deadline = time.monotonic() + timeout
    while marker is not None and not marker.search(started.text()):
        if started.process.poll() is not None:
            return f"finished before the kill (exit {started.process.returncode})"
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    try:
        return f"finished before the kill (exit {started.process.wait(timeout=delay)})"
    except subprocess.TimeoutExpired:
        kill(started)
        return "killed"
