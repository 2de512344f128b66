from pathlib import Path

import duckdb
import pytest

from dedup_pipeline.cli import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK, main
from tests.conftest import encoded, smooth_picture


@pytest.fixture
def leaky_dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    pictures = {"train/a/0.png": 0, "train/a/1.png": 1, "train/b/2.png": 2, "test/a/copy.png": 1, "test/b/3.png": 3}
    for path, seed in pictures.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(encoded(smooth_picture(seed), "PNG"))
    return root


def test_run_exits_nonzero_when_the_leak_check_fails(leaky_dataset: Path, tmp_path: Path, capsys) -> None:
    database = tmp_path / "out.duckdb"
    assert (
        main(
            ["run", "--data", str(leaky_dataset), "--db", str(database), "--embedding-model", "none", "--workers", "1"]
        )
        == EXIT_CHECK_FAILED
    )
    output = capsys.readouterr().out
    assert "leak_budget" in output and "FAILED" in output
    with duckdb.connect(str(database), read_only=True) as connection:
        assert connection.execute("SELECT path FROM dedup_manifest WHERE NOT keep").fetchall() == [("test/a/copy.png",)]


def test_run_passes_within_the_leak_budget(leaky_dataset: Path, tmp_path: Path) -> None:
    arguments = ["run", "--data", str(leaky_dataset), "--db", str(tmp_path / "o.duckdb"), "--embedding-model", "none"]
    assert main([*arguments, "--max-leaked-fraction", "0.5", "--hamming", "phash=4"]) == EXIT_OK


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["run", "--data", str(tmp_path / "missing"), "--db", str(tmp_path / "x.duckdb")]) == EXIT_BAD_INPUT
    assert "dataset not found" in capsys.readouterr().err
    assert main(["run", "--data", str(tmp_path), "--hamming", "colorhash=3"]) == EXIT_BAD_INPUT


def test_demo_finds_the_planted_leaks(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--dir", str(tmp_path / "demo")]) == EXIT_OK
    assert "every planted duplicate was found" in capsys.readouterr().out


def test_an_error_inside_the_run_is_reported_with_its_cause(tmp_path: Path, capsys) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,split\na.jpg,train\n")
    assert main(["run", "--data", str(manifest), "--db", str(tmp_path / "x.duckdb"), "--embedding-model", "none"]) == 2
    assert "lacks column(s) ['path']" in capsys.readouterr().err.splitlines()[-1]


def test_resume_skips_the_stages_already_done(leaky_dataset: Path, tmp_path: Path, capsys) -> None:
    database = tmp_path / "out.duckdb"
    arguments = ["run", "--data", str(leaky_dataset), "--db", str(database), "--embedding-model", "none"]
    assert main([*arguments, "--workers", "1"]) == EXIT_CHECK_FAILED
    capsys.readouterr()
    assert main([*arguments, "--workers", "2", "--resume"]) == EXIT_OK  # worker count: not a result setting
    output = capsys.readouterr().out
    assert "already done for these settings and data" in output and "leak report" in output
    with duckdb.connect(str(database)) as connection:  # as if the run had stopped during similar_pairs
        connection.execute("DELETE FROM pipeline_stages WHERE stage = 'similar_pairs'")
    assert main([*arguments, "--resume"]) == EXIT_CHECK_FAILED
    assert "resuming: image_features, match_thresholds already done" in capsys.readouterr().out
    assert main([*arguments, "--resume", "--max-leaked-fraction", "0.5"]) == EXIT_OK  # other settings: all rerun
    assert "resuming: no stage already done" in capsys.readouterr().out
