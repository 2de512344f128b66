"""The three scenarios of ``make stress``, each on its own copy of the stress dataset and store:

* reference: the three stages run one after another, uninterrupted;
* kill and resume: each stage's run is killed with SIGKILL at aimed and at random moments, the
  store is inspected as a reader finds it after every kill, and then the run is let finish;
* concurrent: two command-line runs at once, then a command-line run beside the drop sensor's runs
  (multiprocess executor), with ``check`` commands querying the store all the while.
"""

from __future__ import annotations

import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dedup_pipeline.lib.storage.store import discard
from dedup_pipeline.stress.commands import Started, dedup_command, event_kinds, finish, kill_when, landed, start
from dedup_pipeline.stress.dataset import StressDataset
from dedup_pipeline.stress.tables import Integrity, integrity

STAGES = 3
_NOT_READY = re.compile(r"^error: (no store beside|.* has no join under)", re.MULTILINE)


def run_command(data: Path, database: Path) -> list[str]:
    return [*dedup_command(), "run", "--data", str(data), "--db", str(database)]


@dataclass
class Reference:
    database: Path
    seconds: list[float]


def stages(dataset: StressDataset, work: Path, scenario: str) -> Iterator[tuple[int, Path, Path]]:
    """(stage, data root, database) of a fresh copy of the dataset and store for ``scenario``, each
    yielded once the stage's data has arrived."""
    root, database = work / scenario / "data", work / scenario / "db.duckdb"
    discard(database)
    dataset.build(root)
    for stage in range(STAGES):
        if stage:
            dataset.deliver(root, stage)
        yield stage, root, database


def reference(dataset: StressDataset, work: Path) -> Reference:
    seconds = []
    for stage, root, database in stages(dataset, work, "reference"):
        started = start(run_command(root, database), work / "logs" / f"reference-{stage}.log")
        code = finish(started)
        seconds.append(time.monotonic() - started.at)
        if code not in (0, 1):
            raise RuntimeError(f"the reference run of stage {stage} failed:\n{started.text()[-3000:]}")
    return Reference(database, seconds)


@dataclass
class Attempt:
    stage: int
    aim: str  # where the kill was aimed
    delay: float  # seconds after the aim's log line (or the start) when the kill was sent
    outcome: str  # killed, or finished first with exit code N
    landed: str
    after: Integrity


# Kills aimed at a moment: (what, the log line it follows, the shortest and longest delay after it).
# The lines are logged when extraction starts, just before a drop's shard is written, when the
# calibration trains (or keeps) its verifier, and just before the join's tables are written.
AIMED_KILLS = (
    ("during extraction", re.compile(r"extracting with \d+ workers"), 0.0, 1.0),
    ("during the shard write", re.compile(r"processed [\d,]+/[\d,]+ images"), 0.0, 0.3),
    ("during calibration", re.compile(r"training the pair verifier|keeping the calibration"), 0.0, 3.0),
    ("during the join's database write", re.compile(r"joined [\d,]+ new images"), 0.0, 0.3),
    ("during clusters and reports", re.compile(r"joined [\d,]+ new images"), 0.3, 1.5),
)
RANDOM_SPAN = 0.6  # random kills fall within this share of the stage's reference duration


def kill_and_resume(
    dataset: StressDataset, work: Path, seconds: list[float], random_kills: int, seed: int
) -> tuple[Path, list[Attempt]]:
    """Kill each stage's run at the aimed moments (in the order the run reaches them), then
    ``random_kills`` times at a random moment (each attempt resumes what the killed ones left, so
    the moments fall within the first part of the stage's reference duration); inspect the store
    after each kill; then let the run finish."""
    rng = random.Random(seed)
    attempts = []
    for stage, root, database in stages(dataset, work, "killed"):
        plan = [(aim, marker, rng.uniform(shortest, longest)) for aim, marker, shortest, longest in AIMED_KILLS]
        plan += [("at random", None, rng.uniform(0.02, RANDOM_SPAN) * seconds[stage]) for _ in range(random_kills)]
        for number, (aim, marker, delay) in enumerate(plan):
            started = start(run_command(root, database), work / "logs" / f"killed-{stage}-{number}.log")
            outcome = kill_when(started, marker, delay)
            attempts.append(Attempt(stage, aim, delay, outcome, landed(started.text()), integrity(database)))
        final = start(run_command(root, database), work / "logs" / f"killed-{stage}-final.log")
        code = finish(final)
        attempts.append(Attempt(stage, "none", 0.0, f"let finish (exit {code})", "", integrity(database)))
    return database, attempts


@dataclass
class ConcurrentOutcome:
    database: Path
    runs: list[tuple[str, int]] = field(default_factory=list)  # (what, exit code)
    checks: Counter = field(default_factory=Counter)  # answered, store not built yet, or failed -> count
    events: Counter = field(default_factory=Counter)  # event kind -> count, over every log


class _CheckLoop:
    """``dedup-pipeline check`` of a few images, one after another, until stopped."""

    def __init__(self, images: list[Path], database: Path, logs: Path) -> None:
        self.images, self.database, self.logs = images, database, logs
        self.started: list[Started] = []
        self.codes: Counter = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop)

    def __enter__(self) -> _CheckLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            log = self.logs / f"check-{len(self.started):03d}.log"
            command = [*dedup_command(), "check", *map(str, self.images), "--db", str(self.database)]
            started = start(command, log)
            self.started.append(started)
            code = finish(started)
            if code in (0, 1) and "Traceback" not in started.text():
                self.codes["answered"] += 1
            elif _NOT_READY.search(started.text()):
                self.codes["store not built yet (exit 2)"] += 1
            else:
                self.codes[f"failed (exit {code})"] += 1


CLI, SENSOR = "command-line run", "drop sensor's runs (multiprocess executor)"
# per stage, who starts when (seconds after the stage's data arrived)
CONCURRENT_PLAN = (
    ((CLI, 0.0), (CLI, 0.0)),  # two manual runs at once
    ((SENSOR, 0.0), (CLI, 4.0)),  # a manual run while the sensor's run is under way
    ((CLI, 0.0), (SENSOR, 2.0)),  # the sensor ticking while a manual run writes
)


def instance_home(folder: Path) -> Path:
    """A Dagster instance folder for the runs (telemetry off, which also skips its banner)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return folder


def concurrent(dataset: StressDataset, work: Path, check_images: list[Path]) -> ConcurrentOutcome:
    logs, home = work / "logs" / "concurrent", instance_home(work / "concurrent" / "dagster_home")
    root, database = work / "concurrent" / "data", work / "concurrent" / "db.duckdb"
    environment = {"DAGSTER_HOME": str(home), "DEDUP_DATA": str(root), "DEDUP_DB": str(database)}
    commands = {CLI: run_command(root, database), SENSOR: [sys.executable, "-m", "dedup_pipeline.stress.sensor_runs"]}
    outcome = ConcurrentOutcome(database)
    every: list[Started] = []
    with _CheckLoop(check_images, database, logs) as checks:
        for (stage, _, _), plan in zip(stages(dataset, work, "concurrent"), CONCURRENT_PLAN, strict=True):
            arrived, started = time.monotonic(), []
            for index, (who, offset) in enumerate(plan):
                time.sleep(max(0.0, arrived + offset - time.monotonic()))
                started.append(start(commands[who], logs / f"stage-{stage}-{index}.log", environment))
            for (who, offset), process in zip(plan, started, strict=True):
                outcome.runs.append((f"stage {stage}: {who}, started after {offset:g} s", finish(process)))
            every += started
    every += checks.started
    outcome.checks = checks.codes
    for process in every:
        outcome.events += event_kinds(process.text())
    return outcome
