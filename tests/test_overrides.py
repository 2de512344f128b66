"""A person's marks on pairs, applied by the real pipeline: they change the pairs, the leaks, the
clusters and the dedup manifest, are kept for later drops and recalibrations, and the result equals
a run from scratch given the same thresholds and marks."""

from pathlib import Path

import duckdb
import pytest

from dedup_pipeline.cli import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK, main
from dedup_pipeline.lib.calibration.transforms import transform_named
from dedup_pipeline.lib.decisions.overrides import ADDED, REMOVED
from dedup_pipeline.lib.reporting.html_report import report_folder_of
from tests.test_incremental import assert_equal_to_a_run_from_scratch, picture, save


def run(root: Path, database: Path, *options: str) -> int:
    return main(
        ["run", "--data", str(root), "--db", str(database), "--embedding-model", "none", "--workers", "1", *options]
    )


def query(database: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def leaks(database: Path) -> set[tuple[str, str, str]]:
    return set(query(database, "SELECT path_a, path_b, evidence FROM leaks"))


def kept(database: Path) -> dict[str, tuple[bool, str]]:
    return {
        path: (keep, reason) for path, keep, reason in query(database, "SELECT path, keep, reason FROM dedup_manifest")
    }


@pytest.mark.filterwarnings("ignore")
def test_marks_change_every_result_and_survive_drops_and_recalibration(tmp_path: Path) -> None:
    root, database, scratch = tmp_path / "data", tmp_path / "marked.duckdb", tmp_path / "scratch.duckdb"
    for index in range(60):
        save(picture(8000 + index), root / "train" / "ab"[index % 2] / f"{index:03d}.png")
    for index in range(60, 80):
        save(picture(8000 + index), root / "test" / "ab"[index % 2] / f"{index:03d}.png")
    save(transform_named("jpeg q50").apply(picture(8003)), root / "test" / "b" / "copy-of-003.jpg")
    assert run(root, database) == EXIT_CHECK_FAILED
    assert {(a, b) for a, b, _ in leaks(database)} == {("test/b/copy-of-003.jpg", "train/b/003.png")}

    # the person says the copy is not one, and that two different pictures are
    marks = tmp_path / "marks.csv"
    marks.write_text(
        "path_a,path_b,verdict,note\n"
        "train/b/003.png,test/b/copy-of-003.jpg,not duplicate,\n"
        "test/a/070.png,train/a/010.png,duplicate,same scene\n"
    )
    assert run(root, database, "--overrides", str(marks)) == EXIT_CHECK_FAILED
    assert leaks(database) == {("test/a/070.png", "train/a/010.png", "override")}
    decisions = kept(database)
    assert decisions["test/b/copy-of-003.jpg"] == (True, "unique")
    assert decisions["test/a/070.png"] == (False, "leak") and decisions["train/a/010.png"][0]
    hamming, note = query(
        database, "SELECT hamming, note FROM similar_pairs JOIN pair_overrides ON true WHERE evidence = 'override'"
    )[0]
    assert hamming > 10 and note == "same scene"  # measured like any pair, though nothing matched
    effects = dict(query(database, "SELECT path_a, effect FROM pair_overrides"))
    assert effects == {"test/a/070.png": ADDED, "test/b/copy-of-003.jpg": REMOVED}
    summary = (report_folder_of(database) / "index.html").read_text()
    assert "2 marks, applied by every run" in summary and f"<td>{ADDED}</td>" in summary

    # a later drop, without --overrides: the marks still hold; its own copy is found
    save(transform_named("jpeg q50").apply(picture(8005)), root / "test" / "b" / "copy-of-005.jpg")
    assert run(root, database) == EXIT_CHECK_FAILED
    assert {(a, b) for a, b, _ in leaks(database)} == {
        ("test/a/070.png", "train/a/010.png"),
        ("test/b/copy-of-005.jpg", "train/b/005.png"),
    }
    assert_equal_to_a_run_from_scratch(root, database, scratch, "--embedding-model", "none", "--overrides", str(marks))

    # recalibration joins from scratch: the marks are applied again
    assert run(root, database, "--recalibrate") == EXIT_CHECK_FAILED
    assert ("test/a/070.png", "train/a/010.png", "override") in leaks(database)
    assert kept(database)["test/b/copy-of-003.jpg"] == (True, "unique")

    # clear forgets a mark: the machine's verdict is back
    marks.write_text("path_a,path_b,verdict\ntest/a/070.png,train/a/010.png,clear\n")
    assert run(root, database, "--overrides", str(marks)) == EXIT_CHECK_FAILED
    assert {(a, b) for a, b, _ in leaks(database)} == {
        ("test/b/copy-of-005.jpg", "train/b/005.png")
    }  # the copy of 003 stays not a duplicate
    assert query(database, "SELECT count(*) FROM pair_overrides") == [(1,)]
    marks.write_text(
        "path_a,path_b,verdict\ntest/b/copy-of-005.jpg,train/b/005.png,not duplicate\n"
        "train/b/003.png,test/b/copy-of-003.jpg,clear\n"
    )
    assert run(root, database, "--overrides", str(marks)) == EXIT_CHECK_FAILED  # the copy of 003 leaks again
    assert {(a, b) for a, b, _ in leaks(database)} == {("test/b/copy-of-003.jpg", "train/b/003.png")}


def test_a_bad_marks_file_stops_the_run_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root, database = tmp_path / "data", tmp_path / "db.duckdb"
    save(picture(1), root / "train" / "a" / "1.png")
    marks = tmp_path / "marks.csv"
    marks.write_text("path_a,path_b,verdict\na.png,b.png,probably\n")
    assert run(root, database, "--overrides", str(marks)) == EXIT_BAD_INPUT
    assert "line 2: verdict 'probably' is not one of" in capsys.readouterr().err
    assert not database.exists()
    marks.write_text("path_a,path_b,verdict\na.png,b.png,duplicate\n")
    assert run(root, database, "--overrides", str(marks), "--no-calibration") == EXIT_OK
    assert query(database, "SELECT effect FROM pair_overrides") == [
        ("inactive: both images are not among the live images",)
    ]
