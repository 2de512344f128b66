import re
import sys
import time
from pathlib import Path

from dedup_pipeline.stress.commands import event_kinds, kill_when, landed, start

LOG = (
    "2026-11-29 21:56:27 +0000 - dagster - INFO - __ephemeral_asset_job__ - b1419d70-7704-47af-867c-22c847084825"
    " - image_features - drop 000001-initial: extracting with 2 workers into /x\n"
    "2026-11-29 21:56:36 +0000 - dagster - INFO - __ephemeral_asset_job__ - b1419d70-7704-47af-867c-22c847084825"
    " - match_thresholds - training the pair verifier\n"
)


def test_where_a_killed_run_was_is_its_last_logged_step() -> None:
    assert landed(LOG) == "match_thresholds: training the pair verifier"
    assert landed("Welcome to Dagster!\n") == "start-up or registration (no step had logged)"


def test_errors_and_waits_are_told_apart() -> None:
    text = (
        "waiting for pid 12 (dedup-pipeline run), since 2026-11-29T22:00:40 to finish writing the store\n"
        "sensor tick: not registering now: the store is being written by pid 12\n"
        "error: the store is being written by pid 12; gave up after waiting 1 s\n"
        "IO Error: Could not set lock on file x.duckdb: Conflicting lock is held\n"
        "UserWarning: Corrupt EXIF data.\n"
    )
    events = event_kinds(text)
    assert events["waited: a run for another run to finish writing"] == 1
    assert events["waited: a sensor tick deferred while another process wrote"] == 1
    assert events["error: gave up waiting for another process"] == 1
    assert events["error: DuckDB lock error"] == 2
    assert events["error: database unreadable"] == 0  # a picture's corrupt EXIF is not the database


def test_a_kill_follows_its_log_line_and_takes_the_whole_process_group(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(child.pid, flush=True); print('ready to write', flush=True); time.sleep(60)"
    )
    started = start([sys.executable, "-c", code], tmp_path / "log.txt")
    assert kill_when(started, re.compile("ready to write"), delay=0.1) == "killed"
    child = int(started.text().split()[0])
    time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


def test_a_command_that_ends_before_its_kill_says_so(tmp_path: Path) -> None:
    started = start([sys.executable, "-c", "print('done')"], tmp_path / "log.txt")
    assert kill_when(started, re.compile("never logged"), delay=0.1) == "finished before the kill (exit 0)"
