"""After any sequence of drops (files added in place, a drop folder, files rewritten in place and
deleted), the incremental results equal a from-scratch run on the final data with the same
thresholds (``--thresholds-from``): the real pipeline, calibrated, with the default embedding model."""

from pathlib import Path

import duckdb
import polars as pl
import pytest
from PIL import Image

from dedup_pipeline.cli import EXIT_BAD_INPUT, main
from dedup_pipeline.lib.calibration.transforms import transform_named
from dedup_pipeline.lib.search.lookup import stored_duplicates
from dedup_pipeline.lib.storage.store import Store, discard
from tests.conftest import smooth_picture

COMPARED = {
    "duplicate_pairs": "SELECT * FROM duplicate_pairs",
    "similar_pairs": """
        SELECT a.path AS path_a, b.path AS path_b, p.* EXCLUDE (image_id_a, image_id_b)
        FROM similar_pairs p JOIN image_manifest a ON a.image_id = p.image_id_a
        JOIN image_manifest b ON b.image_id = p.image_id_b""",
    "duplicate_clusters": "SELECT * EXCLUDE (image_id, representative_id, linked_to_id) FROM duplicate_clusters",
    "dedup_manifest": "SELECT * FROM dedup_manifest",
    "leak_report": "SELECT * FROM leak_report",
    "label_conflicts": "SELECT * FROM label_conflicts",
    "nearest_neighbours": "SELECT * FROM nearest_neighbours",
}


def picture(seed: int) -> Image.Image:
    return smooth_picture(seed, size=(64, 64))


def save(image: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.convert("RGB").save(path, quality=90) if path.suffix == ".jpg" else image.save(path)


def results(database: Path) -> dict[str, pl.DataFrame]:
    with duckdb.connect(str(database), read_only=True) as connection:
        return {name: connection.execute(query).pl().sort(pl.all()) for name, query in COMPARED.items()}


def run(root: Path, database: Path, *options: str) -> None:
    code = main(["run", "--data", str(root), "--db", str(database), "--embedding-image-size", "64", *options])
    assert code != EXIT_BAD_INPUT


def assert_equal_to_a_run_from_scratch(
    root: Path, incremental: Path, scratch: Path, *options: str
) -> dict[str, pl.DataFrame]:
    discard(scratch)
    run(root, scratch, "--thresholds-from", str(incremental), *options)
    found, expected = results(incremental), results(scratch)
    for name in COMPARED:
        only_found = found[name].join(expected[name], on=found[name].columns, how="anti", nulls_equal=True)
        only_expected = expected[name].join(found[name], on=found[name].columns, how="anti", nulls_equal=True)
        assert found[name].equals(expected[name]), (name, only_found.rows(), only_expected.rows())
    return found


@pytest.mark.filterwarnings("ignore")
def test_incremental_runs_equal_a_run_from_scratch_after_every_kind_of_change(tmp_path: Path) -> None:
    root, incremental, scratch = tmp_path / "data", tmp_path / "incremental.duckdb", tmp_path / "scratch.duckdb"
    for index in range(110):  # enough to calibrate thresholds and train the verifier
        split, label = ("train", "ab"[index % 2]) if index < 80 else ("test", "ab"[index % 2])
        save(picture(4000 + index), root / split / label / f"{index:03d}.png")
    for index, name in [(3, "jpeg q50"), (10, "gamma 0.5"), (21, "hflip")]:  # leaks from the start
        save(transform_named(name).apply(picture(4000 + index)), root / "test" / "a" / f"copy{index}.png")
    run(root, incremental)
    first = assert_equal_to_a_run_from_scratch(root, incremental, scratch)
    assert first["duplicate_pairs"].height >= 3

    # drop 1: files added in place, two of them copies (a leak and a within-train duplicate)
    save(transform_named("crop 4px").apply(picture(4005)), root / "test" / "b" / "new-copy.png")
    save(picture(4007), root / "train" / "b" / "007-again.png")
    for index in range(3):
        save(picture(5000 + index), root / "train" / "a" / f"new{index}.png")
    run(root, incremental)
    assert_equal_to_a_run_from_scratch(root, incremental, scratch)

    # drop 2: a delivery folder, complete with its marker; one copy of an image of drop 1
    delivery = root / "drops" / "2026-11-29"
    save(transform_named("jpeg q30").apply(picture(5001)), delivery / "test" / "a" / "delivered-copy.jpg")
    save(picture(6000), delivery / "test" / "b" / "delivered.png")
    (delivery / "_SUCCESS").touch()
    run(root, incremental)
    assert_equal_to_a_run_from_scratch(root, incremental, scratch)

    # drop 3: a leak rewritten in place with another picture, a train image rewritten into a copy
    # of a test image (a new leak), a duplicated train image and a delivered file deleted
    save(picture(7000), root / "test" / "a" / "copy3.png")
    save(transform_named("gamma 2.0").apply(picture(4090)), root / "train" / "a" / "012.png")
    (root / "train" / "b" / "007-again.png").unlink()
    (delivery / "test" / "b" / "delivered.png").unlink()
    run(root, incremental)
    final = assert_equal_to_a_run_from_scratch(root, incremental, scratch)

    names = [drop.name for drop in Store.beside(incremental).drops()]
    # the deletion in the delivery folder is a drop of that folder again
    assert [name if not name.startswith("tree-") else "tree-" for name in names] == [
        "initial",
        "tree-",
        "2026-11-29",
        "tree-",
        "2026-11-29",
    ]
    with duckdb.connect(str(incremental), read_only=True) as connection:
        retired = dict(connection.execute("SELECT path, reason FROM retired_images").fetchall())
        calibrations = connection.execute("SELECT source FROM calibration").fetchall()
    assert retired == {
        "test/a/copy3.png": "changed: new content",
        "train/a/012.png": "changed: new content",
        "train/b/007-again.png": "deleted",
        "drops/2026-11-29/test/b/delivered.png": "deleted",
    }
    assert calibrations == [("calibrated",)]  # calibrated once, kept by every drop
    leaks = set(
        final["duplicate_pairs"].filter(pl.col("split_a") != pl.col("split_b")).select("path_a", "path_b").rows()
    )
    assert ("test/a/copy3.png", "train/a/003.png") not in leaks and any("012.png" in a + b for a, b in leaks)

    # recalibration: thresholds and verifier again on every stored image, the stored images joined
    # again from their stored features: nothing is extracted, the result equals a run from scratch
    with duckdb.connect(str(incremental), read_only=True) as connection:
        before = connection.execute("SELECT calibrated_at FROM calibration").fetchone()[0]
    shards = sorted(path.stat().st_mtime_ns for path in Store.beside(incremental).folder.glob("shards/*/*.parquet"))
    run(root, incremental, "--recalibrate")
    assert sorted(p.stat().st_mtime_ns for p in Store.beside(incremental).folder.glob("shards/*/*.parquet")) == shards
    assert len(Store.beside(incremental).drops()) == 5
    with duckdb.connect(str(incremental), read_only=True) as connection:
        assert connection.execute("SELECT calibrated_at FROM calibration").fetchone()[0] > before
    assert_equal_to_a_run_from_scratch(root, incremental, scratch)

    # check: an image's stored duplicates are those a drop of that image alone finds
    incoming = tmp_path / "incoming" / "copy-of-030.png"
    save(transform_named("jpeg q50").apply(picture(4030)), incoming)
    found = stored_duplicates([incoming], incremental).duplicates
    assert "train/a/030.png" in found["path"].to_list()
    save(transform_named("jpeg q50").apply(picture(4030)), root / "test" / "b" / "copy-of-030.png")
    run(root, incremental)
    with duckdb.connect(str(incremental), read_only=True) as connection:
        dropped = connection.execute(
            "SELECT CASE WHEN path_a = $p THEN path_b ELSE path_a END AS path, hamming, cosine, evidence "
            "FROM duplicate_pairs WHERE $p IN (path_a, path_b)",
            {"p": "test/b/copy-of-030.png"},
        ).pl()
    assert found.select("path", "hamming", "cosine", "evidence").sort("path").equals(dropped.sort("path"))
