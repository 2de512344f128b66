import os
from pathlib import Path

import polars as pl
import pytest

from dedup_pipeline.lib.inputs.sources import DatasetError, discover, local_path, stored_path


def touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")


def test_folder_tree_splits_labels_and_problems(tmp_path: Path) -> None:
    touch(tmp_path / "train" / "cat" / "a.jpg")
    touch(tmp_path / "train" / "cat" / "deeper" / "b.jpg")
    touch(tmp_path / "holdout" / "c.png")  # directly under the split: no label
    touch(tmp_path / "stray.jpg")  # outside any split
    touch(tmp_path / "train" / ".DS_Store")
    sources = discover(tmp_path)
    assert [(s.path, s.split, s.label) for s in sources.images] == [
        ("holdout/c.png", "holdout", None),
        ("train/cat/a.jpg", "train", "cat"),
        ("train/cat/deeper/b.jpg", "train", "cat"),
    ]
    assert [(p.path, p.reason) for p in sources.problems] == [
        ("stray.jpg", "not inside a split folder (<root>/<split>/...)")
    ]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_manifest_file_records_every_bad_row(tmp_path: Path, suffix: str) -> None:
    touch(tmp_path / "img" / "a.jpg")
    touch(tmp_path / "img" / "b.jpg")
    table = pl.DataFrame(
        {
            "path": ["img/a.jpg", "img/b.jpg", "img/a.jpg", "img/missing.jpg", "img/b.jpg"],
            "split": ["train", None, "test", "val", "test"],
            "label": ["cat", "dog", "cat", None, "dog"],
        }
    )
    manifest = tmp_path / f"manifest{suffix}"
    table.write_csv(manifest) if suffix == ".csv" else table.write_parquet(manifest)
    sources = discover(manifest)
    assert [(s.path, s.split, s.label) for s in sources.images] == [
        ("img/a.jpg", "train", "cat"),
        ("img/b.jpg", "test", "dog"),
    ]
    reasons = sorted((p.path, p.reason.split(";")[0]) for p in sources.problems)
    assert len(reasons) == 3  # b without split, a listed twice, missing file: nothing silently dropped
    assert ("img/missing.jpg", "file not found") in reasons
    assert any("listed again" in reason for _, reason in reasons)
    assert any("has no split" in reason for _, reason in reasons)


def test_manifest_rows_outside_the_allowed_roots_are_refused(tmp_path: Path) -> None:
    data, outside = tmp_path / "data", tmp_path / "outside"
    touch(data / "img" / "a.jpg")
    touch(outside / "secret.png")
    rows = ["img/a.jpg", str(data / "img" / "a.jpg"), "../outside/secret.png", str(outside / "secret.png")]
    manifest = data / "manifest.csv"
    pl.DataFrame({"path": rows, "split": ["train", "val", "test", "test"]}).write_csv(manifest)
    refused = "outside the allowed roots (the manifest's folder, --allow-root)"
    sources = discover(manifest)
    assert [image.path for image in sources.images] == [str(data / "img" / "a.jpg"), "img/a.jpg"]
    assert sorted((problem.path, problem.reason) for problem in sources.problems) == sorted(
        [("../outside/secret.png", refused), (str(outside / "secret.png"), refused)]
    )
    allowed = discover(manifest, allowed_roots=[outside])
    assert len(allowed.images) == 4 and not allowed.problems


def test_manifest_without_required_columns_is_a_clear_error(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,split\na.jpg,train\n")
    with pytest.raises(DatasetError, match="lacks column"):
        discover(manifest)


def test_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        discover(tmp_path / "nowhere")


def test_symlinked_folders_are_followed_and_loops_recorded(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    touch(outside / "dog" / "d.jpg")
    root = tmp_path / "data"
    touch(root / "train" / "cat" / "a.jpg")
    (root / "train" / "dog").symlink_to(outside / "dog", target_is_directory=True)
    (root / "train" / "cat" / "loop").symlink_to(root / "train", target_is_directory=True)
    sources = discover(root)
    assert [s.path for s in sources.images] == ["train/cat/a.jpg", "train/dog/d.jpg"]
    assert [(p.path, p.reason) for p in sources.problems] == [
        ("train/cat/loop", "symbolic link loop: folder not followed")
    ]


def test_broken_links_and_hidden_folders(tmp_path: Path) -> None:
    touch(tmp_path / "train" / "cat" / "a.jpg")
    touch(tmp_path / "train" / ".cache" / "b.jpg")  # hidden folder: skipped, with all below it
    (tmp_path / "train" / "cat" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    sources = discover(tmp_path)
    assert [s.path for s in sources.images] == ["train/cat/a.jpg"]
    assert [(p.path, p.split, p.label, p.reason) for p in sources.problems] == [
        ("train/cat/gone.jpg", "train", "cat", "broken symbolic link")
    ]


def test_file_links_that_lead_to_each_other_are_recorded(tmp_path: Path) -> None:
    touch(tmp_path / "train" / "cat" / "ok.png")
    (tmp_path / "train" / "cat" / "loop_a.jpg").symlink_to("loop_b.jpg")
    (tmp_path / "train" / "cat" / "loop_b.jpg").symlink_to("loop_a.jpg")
    sources = discover(tmp_path)
    assert [image.path for image in sources.images] == ["train/cat/ok.png"]
    assert [(problem.path, problem.reason) for problem in sources.problems] == [
        ("train/cat/loop_a.jpg", "symbolic link loop: file not read"),
        ("train/cat/loop_b.jpg", "symbolic link loop: file not read"),
    ]


def test_a_fifo_is_recorded_not_read(tmp_path: Path) -> None:
    touch(tmp_path / "train" / "cat" / "ok.png")
    os.mkfifo(tmp_path / "train" / "cat" / "pipe.png")  # opening it to read would wait for a writer
    sources = discover(tmp_path)
    assert [image.path for image in sources.images] == ["train/cat/ok.png"]
    assert [(problem.path, problem.reason) for problem in sources.problems] == [
        ("train/cat/pipe.png", "not a regular file")
    ]


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("train/cat/plain.png", "train/cat/plain.png"),
        ("train/cat/été.png", "train/cat/été.png"),  # UTF-8 stays as it is
        ("train/cat/\udce9t\udce9.png", "train/cat/\\xe9t\\xe9.png"),  # Latin-1 bytes
        ("train/cat/a\\xe9.png", "train/cat/a\\\\xe9.png"),  # a real backslash never reads as a byte
        ("\\\udcff\\", "\\\\\\xff\\\\"),
    ],
)
def test_stored_paths_are_valid_utf8_readable_and_reversible(raw: str, stored: str) -> None:
    assert stored_path(raw) == stored
    assert local_path(stored) == raw
    stored.encode("utf-8")


def test_a_file_name_that_is_not_utf8_is_listed_readably(tmp_path: Path) -> None:
    folder = tmp_path / "train" / "cat"
    touch(folder / "ok.png")
    raw = os.fsencode(folder) + b"/\xe9t\xe9.png"  # Latin-1 "été.png"
    with open(raw, "wb") as handle:
        handle.write(b"x")
    sources = discover(tmp_path)
    image = next(image for image in sources.images if image.path != "train/cat/ok.png")
    assert image.path == "train/cat/\\xe9t\\xe9.png"
    assert os.fsencode(local_path(image.file)) == raw  # the file opens again


def test_images_are_ordered_by_their_path_text(tmp_path: Path) -> None:
    for name in ["train/b/x.jpg", "train/a-b/y.jpg", "train/a/z.jpg", "test/a/w.jpg"]:
        touch(tmp_path / name)
    sources = discover(tmp_path)
    paths = [s.path for s in sources.images]
    assert paths == sorted(paths) == ["test/a/w.jpg", "train/a-b/y.jpg", "train/a/z.jpg", "train/b/x.jpg"]
    assert all(Path(s.file) == tmp_path.resolve() / s.path for s in sources.images)


def test_a_loop_inside_a_linked_folder_is_followed_once(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    touch(outside / "sub" / "d.jpg")
    (outside / "sub" / "again").symlink_to(outside / "sub", target_is_directory=True)
    root = tmp_path / "data"
    touch(root / "train" / "cat" / "a.jpg")
    (root / "train" / "dog").symlink_to(outside, target_is_directory=True)
    sources = discover(root)
    assert [s.path for s in sources.images] == ["train/cat/a.jpg", "train/dog/sub/d.jpg"]
    assert [(p.path, p.reason) for p in sources.problems] == [
        ("train/dog/sub/again", "symbolic link loop: folder not followed")
    ]
