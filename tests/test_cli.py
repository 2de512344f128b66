import json
import os
from pathlib import Path

import duckdb
import numpy as np
import pytest
from PIL import Image

from dedup_pipeline.cli import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK, _verifier_line, main
from dedup_pipeline.lib.storage.database import write_first_join, write_verifier
from dedup_pipeline.lib.storage.store import Store
from dedup_pipeline.lib.verification.base_rate import ExpectedPrecision
from dedup_pipeline.lib.verification.pair_scorer import PairScorer
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
    assert "over the budget of 0.00%: test 50.00% (1 of 2 images)" in output
    with duckdb.connect(str(database), read_only=True) as connection:
        assert connection.execute("SELECT path FROM dedup_manifest WHERE NOT keep").fetchall() == [("test/a/copy.png",)]


def test_run_passes_within_the_leak_budget(leaky_dataset: Path, tmp_path: Path) -> None:
    arguments = ["run", "--data", str(leaky_dataset), "--db", str(tmp_path / "o.duckdb"), "--embedding-model", "none"]
    assert main([*arguments, "--max-leaked-fraction", "0.5", "--hamming", "phash=4"]) == EXIT_OK


def test_bad_input_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["run", "--data", str(tmp_path / "missing"), "--db", str(tmp_path / "x.duckdb")]) == EXIT_BAD_INPUT
    assert "dataset not found" in capsys.readouterr().err
    assert main(["run", "--data", str(tmp_path), "--hamming", "colorhash=3"]) == EXIT_BAD_INPUT


def test_demo_finds_the_planted_leaks_of_both_drops(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--dir", str(tmp_path / "demo")]) == EXIT_OK
    output = capsys.readouterr().out
    assert "every planted duplicate of both drops was found" in output
    assert "000002-second-delivery" in output and "leaks changed by this run" in output
    report = tmp_path / "demo" / "demo.report"
    latest = json.loads((report / "data" / "latest.js").read_text().removeprefix("window.REPORT_TABLE = ")[:-2])
    with duckdb.connect(str(tmp_path / "demo" / "demo.duckdb"), read_only=True) as connection:
        made = connection.execute(
            "SELECT count(*) FROM similar_pairs p JOIN image_manifest a ON a.image_id = p.image_id_a "
            "JOIN image_manifest b ON b.image_id = p.image_id_b "
            "WHERE greatest(a.drop_seq, b.drop_seq) = (SELECT max(drop_seq) FROM image_manifest)"
        ).fetchone()[0]
    paths = [row[[c["key"] for c in latest["columns"]].index("path_a")] for row in latest["rows"]]
    assert made > 0 and len(paths) == made and all(p.startswith("drops/second-delivery/") for p in paths)
    assert "Drop 000002-second-delivery" in (report / "latest.html").read_text()


def test_an_error_inside_the_run_is_reported_with_its_cause(tmp_path: Path, capsys) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,split\na.jpg,train\n")
    assert main(["run", "--data", str(manifest), "--db", str(tmp_path / "x.duckdb"), "--embedding-model", "none"]) == 2
    assert "lacks column(s) ['path']" in capsys.readouterr().err.splitlines()[-1]


def test_a_second_run_reads_only_what_changed(leaky_dataset: Path, tmp_path: Path, capsys) -> None:
    database = tmp_path / "out.duckdb"
    arguments = ["run", "--data", str(leaky_dataset), "--db", str(database), "--embedding-model", "none"]
    assert main([*arguments, "--workers", "1"]) == EXIT_CHECK_FAILED
    capsys.readouterr()
    assert main(arguments) == EXIT_CHECK_FAILED  # nothing new: nothing extracted, same results
    assert "no new, rewritten or deleted files" in capsys.readouterr().out
    assert [drop.key for drop in Store.beside(database).drops()] == ["000001-initial"]
    (leaky_dataset / "test/a/copy.png").unlink()  # the leak goes, and leaves a trace
    assert main(arguments) == EXIT_OK
    output = capsys.readouterr().out
    assert "deleted" in output and "gone" in output
    with duckdb.connect(str(database), read_only=True) as connection:
        retired = connection.execute("SELECT path, reason, retired_by FROM retired_images").fetchall()
    assert retired == [("test/a/copy.png", "deleted", Store.beside(database).drops()[-1].key)]


def test_check_prints_stored_duplicates_and_fails_without_changing_the_store(
    leaky_dataset: Path, tmp_path: Path, capsys
) -> None:
    database = tmp_path / "out.duckdb"
    main(["run", "--data", str(leaky_dataset), "--db", str(database), "--embedding-model", "none", "--workers", "1"])
    capsys.readouterr()
    outside = tmp_path / "incoming"
    outside.mkdir()
    (outside / "same.png").write_bytes(encoded(smooth_picture(2), "PNG"))  # train/b/2.png, re-encoded
    (outside / "new.png").write_bytes(encoded(smooth_picture(77), "PNG"))
    before = database.stat().st_mtime_ns
    assert main(["check", str(outside / "same.png"), str(outside / "new.png"), "--db", str(database)]) == (
        EXIT_CHECK_FAILED
    )
    output = capsys.readouterr().out
    assert "train/b/2.png" in output and "1 of 2 checked image(s) have a duplicate" in output
    assert main(["check", str(outside / "new.png"), "--db", str(database)]) == EXIT_OK
    assert database.stat().st_mtime_ns == before and len(Store.beside(database).drops()) == 1
    assert main(["check", str(outside / "new.png"), "--db", str(tmp_path / "none.duckdb")]) == EXIT_BAD_INPUT


def test_flat_pictures_of_a_small_dataset_are_not_matched_to_each_other(tmp_path: Path) -> None:
    # too few images to calibrate: the fixed fallbacks, under which flat fills once matched pairwise
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    fills = {"train/a/black.png": 0, "train/a/gray.png": 60, "train/b/white.png": 250, "test/a/dark.png": 20}
    for path, level in fills.items():
        grain = rng.integers(-1, 2, size=(48, 48, 3))
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(level + grain, 0, 255).astype(np.uint8)).save(root / path)
    (root / "test/b").mkdir(parents=True)
    (root / "test/b/same-black.png").write_bytes(encoded(Image.new("RGB", (48, 48)), "PNG"))
    database = tmp_path / "out.duckdb"
    main(["run", "--data", str(root), "--db", str(database), "--workers", "1"])
    with duckdb.connect(str(database), read_only=True) as connection:
        pairs = connection.execute("SELECT path_a, path_b FROM duplicate_pairs ORDER BY ALL").fetchall()
    assert pairs == [("test/b/same-black.png", "train/a/black.png")]


def test_the_summary_states_the_verifier_threshold_and_its_expected_precision() -> None:
    connection = duckdb.connect()
    assert _verifier_line(connection) is None  # no verifier
    scorer = PairScorer(("a",), np.zeros(1), np.ones(1), np.eye(1, dtype=np.int64), np.ones(1), 0.0, 0.9)
    write_verifier(connection, scorer)
    assert _verifier_line(connection) is None  # not joined yet
    write_first_join(
        connection, 0.1, 0.85, ExpectedPrecision(candidates=900, flagged=40, copy_share=0.05, precision=0.97)
    )
    line = _verifier_line(connection)
    assert "probability >= 0.85" in line and "expected 0.970" in line and "5.00%" in line


def test_unusable_settings_are_refused_before_any_work(leaky_dataset: Path, tmp_path: Path, capsys) -> None:
    database = tmp_path / "db.duckdb"
    arguments = ["run", "--data", str(leaky_dataset), "--db", str(database)]
    assert main([*arguments, "--target-precision", "1.5", "--cosine-threshold", "2"]) == EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "target_precision must be above 0 and below 1" in error and "cosine_threshold must be between" in error
    assert not database.exists() and not Store.beside(database).folder.exists()
    folder = tmp_path / "results"
    folder.mkdir()
    assert main(["run", "--data", str(leaky_dataset), "--db", str(folder)]) == EXIT_BAD_INPUT
    assert "is a folder" in capsys.readouterr().err


def test_a_name_that_is_not_utf8_and_links_in_a_loop_do_not_stop_the_run(
    leaky_dataset: Path, tmp_path: Path, capsys
) -> None:
    folder = leaky_dataset / "train" / "a"
    with open(os.fsencode(folder) + b"/\xe9t\xe9.png", "wb") as handle:  # Latin-1 "été.png"
        handle.write(encoded(smooth_picture(7), "PNG"))
    (folder / "loop_a.jpg").symlink_to("loop_b.jpg")
    (folder / "loop_b.jpg").symlink_to("loop_a.jpg")
    database = tmp_path / "db.duckdb"
    assert main(["run", "--data", str(leaky_dataset), "--db", str(database)]) == EXIT_CHECK_FAILED
    assert "decode_failure_rate" in capsys.readouterr().out  # two of eight inputs are not images
    with duckdb.connect(str(database), read_only=True) as connection:
        paths = [path for (path,) in connection.execute("SELECT path FROM image_manifest").fetchall()]
        errors = dict(connection.execute("SELECT path, reason FROM image_errors").fetchall())
    assert len(paths) == 6 and "train/a/\\xe9t\\xe9.png" in paths
    assert errors == {
        "train/a/loop_a.jpg": "symbolic link loop: file not read",
        "train/a/loop_b.jpg": "symbolic link loop: file not read",
    }


def test_a_manifest_reads_outside_its_folder_only_where_allowed(tmp_path: Path) -> None:
    data, outside = tmp_path / "data", tmp_path / "outside"
    for folder, name, seed in [(data, "a.png", 1), (data, "b.png", 2), (outside, "secret.png", 3)]:
        folder.mkdir(exist_ok=True)
        (folder / name).write_bytes(encoded(smooth_picture(seed), "PNG"))
    manifest = data / "manifest.csv"
    manifest.write_text("path,split\na.png,train\nb.png,test\n../outside/secret.png,test\n")

    def read(database: Path, *more: str) -> tuple[list[str], list[str]]:
        main(["run", "--data", str(manifest), "--db", str(database), *more])
        with duckdb.connect(str(database), read_only=True) as connection:
            images = [
                path for (path,) in connection.execute("SELECT path FROM image_manifest ORDER BY path").fetchall()
            ]
            errors = [reason for (reason,) in connection.execute("SELECT reason FROM image_errors").fetchall()]
        return images, errors

    images, errors = read(tmp_path / "refused.duckdb")
    assert images == ["a.png", "b.png"] and errors == [
        "outside the allowed roots (the manifest's folder, --allow-root)"
    ]
    images, errors = read(tmp_path / "allowed.duckdb", "--allow-root", str(outside))
    assert images == ["../outside/secret.png", "a.png", "b.png"] and errors == []


def test_a_corpus_of_bad_inputs_gets_a_reason_each_and_every_good_image_is_processed(tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    folder = root / "train" / "a"
    good = {
        "train/a/0.png": encoded(smooth_picture(0), "PNG"),
        "train/a/jpeg_named.png": encoded(smooth_picture(1), "JPEG"),
        "train/a/one_pixel.png": encoded(Image.new("RGB", (1, 1), (10, 20, 30)), "PNG"),
        "train/a/tall.png": encoded(Image.new("RGB", (1, 100_000), (30, 20, 10)), "PNG"),
        "train/a/" + "x" * 251 + ".png": encoded(smooth_picture(2), "PNG"),  # a 255-byte name
        "train/a/folder.jpg/inside.png": encoded(smooth_picture(3), "PNG"),  # a folder named like an image
        "test/a/1.png": encoded(smooth_picture(4), "PNG"),
    }
    for path, data in good.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "random.jpg").write_bytes(np.random.default_rng(0).bytes(4096))
    (folder / "truncated.png").write_bytes(good["train/a/0.png"][:200])
    (folder / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    os.mkfifo(folder / "pipe.png")
    database = tmp_path / "db.duckdb"
    assert main(["run", "--data", str(root), "--db", str(database)]) == EXIT_CHECK_FAILED  # decode_failure_rate
    capsys.readouterr()
    with duckdb.connect(str(database), read_only=True) as connection:
        paths = {path for (path,) in connection.execute("SELECT path FROM image_manifest").fetchall()}
        errors = dict(connection.execute("SELECT path, reason FROM image_errors").fetchall())
    assert paths == set(good)
    assert errors.keys() == {
        f"train/a/{name}" for name in ("empty.jpg", "random.jpg", "truncated.png", "dangling.png", "loop", "pipe.png")
    }
    assert errors["train/a/empty.jpg"] == "empty file (0 bytes)"
    assert errors["train/a/dangling.png"] == "broken symbolic link"
    assert errors["train/a/loop"] == "symbolic link loop: folder not followed"
    assert errors["train/a/pipe.png"] == "not a regular file"
    assert "truncated" in errors["train/a/truncated.png"]
    assert "identify" in errors["train/a/random.jpg"]


def test_names_made_of_sql_pass_through_as_values(tmp_path: Path, capsys) -> None:
    """Quotes, semicolons and comments in folder, label and file names, and in the database's own
    path (which view definitions name as a string literal), are data: nothing runs as SQL."""
    root = tmp_path / "data"
    copy = "test/b\"; DROP TABLE similar_pairs; --/O'Brien'); DELETE FROM image_catalog; --.png"
    pictures = {"train/a/0.png": 0, "train/a/1.png": 1, copy: 1, "val' OR '1'='1/a/2.png": 2}
    for path, seed in pictures.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(encoded(smooth_picture(seed), "PNG"))
    database = tmp_path / 'it\'s "here"; --' / "db.duckdb"
    arguments = ["run", "--data", str(root), "--db", str(database), "--embedding-model", "none", "--workers", "1"]
    assert main(arguments) == EXIT_CHECK_FAILED  # the leak
    capsys.readouterr()
    with duckdb.connect(str(database), read_only=True) as connection:
        assert connection.execute("SELECT path_a, path_b, label_a FROM duplicate_pairs").fetchall() == [
            (copy, "train/a/1.png", 'b"; DROP TABLE similar_pairs; --')
        ]
        manifest = connection.execute("SELECT path, split FROM dedup_manifest ORDER BY path").fetchall()
    assert manifest == sorted((path, path.split("/")[0]) for path in pictures)
