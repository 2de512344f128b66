"""Command-line runs and checks on one store at the same time, as separate processes."""

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from dedup_pipeline.cli import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, main
from dedup_pipeline.lib.storage.store import Store
from tests.conftest import encoded, hold_store_lock, smooth_picture, stop_holder


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for path, seed in {"train/a/0.png": 0, "train/a/1.png": 1, "train/b/2.png": 2, "test/a/copy.png": 1}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(encoded(smooth_picture(seed), "PNG"))
    return root


def _start_run(dataset: Path, database: Path, home: Path, *options: str) -> subprocess.Popen:
    """``dedup-pipeline run`` in its own process, on a Dagster instance the runs share."""
    arguments = ["run", "--data", str(dataset), "--db", str(database), "--embedding-model", "none", "--workers", "1"]
    return subprocess.Popen(
        [sys.executable, "-m", "dedup_pipeline.cli", *arguments, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "DAGSTER_HOME": str(home)},
    )


def _finished(process: subprocess.Popen) -> tuple[int, str]:
    try:
        out, err = process.communicate(timeout=300)
    finally:
        stop_holder(process)
    return process.returncode, out + err


def test_two_runs_at_once_register_each_change_once_and_agree(dataset: Path, tmp_path: Path) -> None:
    database, home = tmp_path / "db.duckdb", tmp_path / "home"
    home.mkdir()
    runs = [_start_run(dataset, database, home) for _ in range(2)]
    outcomes = [_finished(run) for run in runs]
    assert [code for code, _ in outcomes] == [EXIT_CHECK_FAILED] * 2, outcomes  # the planted leak, no error
    assert len(Store.beside(database).drops()) == 1
    assert sum("no new, rewritten or deleted files" in output for _, output in outcomes) == 1
    with duckdb.connect(str(database), read_only=True) as connection:
        assert connection.execute("SELECT path_a, path_b FROM duplicate_pairs").fetchall() == [
            ("test/a/copy.png", "train/a/1.png")
        ]
        assert connection.execute("SELECT count(*), count(DISTINCT path) FROM dedup_manifest").fetchone() == (4, 4)


def test_checks_during_a_run_wait_their_turn_and_see_whole_tables(dataset: Path, tmp_path: Path, capsys) -> None:
    database, home = tmp_path / "db.duckdb", tmp_path / "home"
    home.mkdir()
    assert _finished(_start_run(dataset, database, home))[0] == EXIT_CHECK_FAILED
    run = _start_run(dataset, database, home, "--recalibrate")  # rewrites every global table
    checks = []
    while run.poll() is None or not checks:
        checks.append(main(["check", str(dataset / "test/a/copy.png"), "--db", str(database), "--workers", "1"]))
    assert _finished(run)[0] == EXIT_CHECK_FAILED
    assert len(checks) >= 2  # at least one began while the run was writing
    assert set(checks) == {EXIT_CHECK_FAILED}, capsys.readouterr().err  # each check found the stored copy
    assert "lock" not in capsys.readouterr().err.lower()


def test_a_run_gives_up_with_a_clear_message_when_another_writer_keeps_the_store(
    dataset: Path, tmp_path: Path, capsys
) -> None:
    database = tmp_path / "db.duckdb"
    holder = hold_store_lock(Store.beside(database).lock_file, 60)
    try:
        code = main(["run", "--data", str(dataset), "--db", str(database), "--wait-seconds", "0.5"])
    finally:
        stop_holder(holder)
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert f"waiting for pid {holder.pid}" in err and "gave up after waiting 0.5 s" in err
    assert Store.beside(database).drops() == [] and not database.exists()
