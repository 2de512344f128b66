"""Materialize the whole graph on generated data (a drop partition, then the global assets) and
check the DuckDB contract."""

import shutil
from pathlib import Path

import duckdb
import pytest

from dedup_pipeline.cli import PipelineRun, materialize
from dedup_pipeline.defs.resources import DedupConfig
from tests.conftest import encoded, smooth_picture

CONTRACT = {
    "duplicate_pairs": [
        "path_a",
        "path_b",
        "split_a",
        "split_b",
        "label_a",
        "label_b",
        "hamming",
        "cosine",
        "evidence",
    ],
    "leaks": ["path_a", "path_b", "split_a", "split_b", "label_a", "label_b", "hamming", "cosine", "evidence"],
    "dedup_manifest": ["path", "split", "label", "keep", "reason"],
    "image_errors": ["path", "split", "reason"],
}


def check_outcomes(result: PipelineRun) -> dict[str, bool]:
    return {evaluation.check_name: evaluation.passed for evaluation in result.check_evaluations()}


@pytest.fixture(scope="module")
def demo_run(demo_dataset, tmp_path_factory) -> tuple[PipelineRun, duckdb.DuckDBPyConnection, list]:
    root, planted = demo_dataset
    database = tmp_path_factory.mktemp("db") / "demo.duckdb"
    result = materialize(DedupConfig(data=str(root), workers=2), database)
    return result, duckdb.connect(str(database), read_only=True), planted


def test_contract_views_have_exact_columns(demo_run) -> None:
    _, connection, _ = demo_run
    for view, columns in CONTRACT.items():
        assert [row[0] for row in connection.execute(f"DESCRIBE {view}").fetchall()] == columns


def test_finds_every_planted_pair_and_nothing_else(demo_run) -> None:
    _, connection, planted = demo_run
    found = {tuple(sorted(row)) for row in connection.execute("SELECT path_a, path_b FROM duplicate_pairs").fetchall()}
    assert found == {tuple(sorted((a, b))) for a, b, _ in planted}
    leaks = connection.execute("SELECT count(*) FROM leaks").fetchone()[0]
    assert leaks == sum(1 for a, b, _ in planted if a.split("/")[0] != b.split("/")[0])


def test_failed_leak_check_still_writes_the_dedup_manifest(demo_run) -> None:
    result, connection, planted = demo_run
    assert result.success
    assert check_outcomes(result) == {"decode_failure_rate": True, "leak_budget": False, "no_leaks_among_kept": True}
    dropped = dict(connection.execute("SELECT path, reason FROM dedup_manifest WHERE NOT keep").fetchall())
    assert dropped == {b: ("leak" if a.split("/")[0] != b.split("/")[0] else "duplicate") for a, b, _ in planted}
    total = connection.execute("SELECT count(*) FROM image_manifest").fetchone()[0]
    assert connection.execute("SELECT count(*) FROM dedup_manifest").fetchone()[0] == total


def test_reports_and_clusters(demo_run) -> None:
    _, connection, _ = demo_run
    conflicts = connection.execute("SELECT path_b, label_a, label_b FROM label_conflicts").fetchall()
    assert conflicts == [("val/texture/hubble_relabelled.jpg", "space", "texture")]
    report = connection.execute(
        "SELECT eval_split, reference_split, leaked_images, conflicting_label_images FROM leak_report ORDER BY ALL"
    ).fetchall()
    assert report == [("test", "train", 3, 0), ("test", "val", 0, 0), ("val", "train", 3, 1)]
    sizes = connection.execute("SELECT DISTINCT cluster_size, max_hops FROM duplicate_clusters").fetchall()
    assert sizes == [(2, 1)]
    links = connection.execute("SELECT path, linked_to FROM duplicate_clusters WHERE NOT is_representative").fetchall()
    assert {tuple(sorted(link)) for link in links} == {tuple(sorted((a, b))) for a, b, _ in demo_run[2]}


def test_materialization_metadata(demo_run) -> None:
    result, _, _ = demo_run
    metadata = result.metadata("similar_pairs")
    assert metadata["dagster/row_count"] == 7 and metadata["from_scratch"] is True
    assert "preview" in metadata and "join_seconds" in metadata
    assert metadata["cosine_threshold"] == 0.85
    catalog = result.metadata("image_catalog")
    assert catalog["merged_drops"] == "000001-initial" and catalog["dagster/row_count"] == 28
    leaks = result.metadata("leak_report")
    assert leaks["leaked_images"] == 6 and leaks["leaked_pairs"] == 6
    report = result.metadata("html_report")["report"]
    assert leaks["leaks_page"] == str(Path(report).with_name("leaks.html")) and Path(leaks["leaks_page"]).exists()


def test_unreadable_inputs_are_recorded_and_checked(demo_dataset, tmp_path: Path) -> None:
    root = tmp_path / "data"
    for split, name in [("train", "a.png"), ("train", "b.png"), ("test", "c.png")]:
        (root / split / "x").mkdir(parents=True, exist_ok=True)
        (root / split / "x" / name).write_bytes(encoded(smooth_picture(len(name) + ord(name[0])), "PNG"))
    (root / "test" / "x" / "broken.jpg").write_bytes(encoded(smooth_picture(1), "JPEG")[:300])
    (root / "stray.png").write_bytes(encoded(smooth_picture(2), "PNG"))
    database = tmp_path / "db.duckdb"
    result = materialize(DedupConfig(data=str(root), embedding_model="none", workers=1), database)
    assert result.success
    assert check_outcomes(result)["decode_failure_rate"] is False  # 2 of 5 inputs failed
    with duckdb.connect(str(database), read_only=True) as connection:
        errors = dict(connection.execute("SELECT path, reason FROM image_errors").fetchall())
        assert set(errors) == {"test/x/broken.jpg", "stray.png"}
        assert connection.execute("SELECT count(*) FROM image_manifest").fetchone()[0] == 3
        assert connection.execute("SELECT count(*) FROM image_embeddings").fetchone()[0] == 0
    shutil.rmtree(root)


def test_a_dataset_where_nothing_decodes_still_materializes(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for name in ("train/x/a.jpg", "test/x/b.png"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"not an image")
    database = tmp_path / "db.duckdb"
    result = materialize(DedupConfig(data=str(root), embedding_model="none", workers=1), database)
    assert result.success
    outcomes = check_outcomes(result)
    assert outcomes["decode_failure_rate"] is False and outcomes["leak_budget"] is True
    with duckdb.connect(str(database), read_only=True) as connection:
        assert connection.execute("SELECT count(*) FROM image_errors").fetchone()[0] == 2
        assert connection.execute("SELECT count(*) FROM dedup_manifest").fetchone()[0] == 0


def test_thresholds_are_calibrated_on_a_large_enough_dataset(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for index in range(130):
        split = "train" if index < 100 else "test"
        (root / split / "x").mkdir(parents=True, exist_ok=True)
        (root / split / "x" / f"{index}.png").write_bytes(encoded(smooth_picture(1000 + index, size=(64, 64)), "PNG"))
    database = tmp_path / "db.duckdb"
    result = materialize(DedupConfig(data=str(root), workers=1, hamming_thresholds={"dhash": 5}), database)
    assert result.success
    with duckdb.connect(str(database), read_only=True) as connection:
        rows = {
            row[0]: row[1:]
            for row in connection.execute(
                "SELECT evidence, source, threshold, holdout_recall FROM match_thresholds"
            ).fetchall()
        }
    assert rows["dhash"][:2] == ("configured", 5.0)  # explicit config wins over calibration
    assert rows["phash"][0].startswith("calibrated") and rows["embedding"][0].startswith("calibrated")
    assert rows["combined"][0].startswith("held-out estimate") and rows["combined"][2] is not None
    # The verifier is trained (or says why not) and, when trained, judges the pairs.
    assert rows["verified"][0].startswith("trained pair verifier"), rows["verified"]
    with duckdb.connect(str(database), read_only=True) as connection:
        stored_threshold = connection.execute("SELECT threshold FROM pair_verifier").fetchone()[0]
        scores = connection.execute(
            "SELECT verification_score, evidence, content_equal OR pixels_equal FROM similar_pairs"
        ).fetchall()
    assert stored_threshold == rows["verified"][1]
    assert all(exact or score >= stored_threshold for score, _, exact in scores)
    assert all(("verified" in evidence) == (score >= stored_threshold) for score, evidence, _ in scores)
    metadata = result.metadata("similar_pairs")
    assert metadata["hamming_thresholds"]["dhash"] == 5
    assert metadata["verifier_threshold"] == stored_threshold
    # the plots: calibration's held-out copies against its negatives, each image's nearest neighbours
    calibration = result.metadata("match_thresholds")["copies_against_negatives"]
    assert calibration.count("data:image/png;base64,") == 2  # phash and embedding (dhash is configured)
    assert "![calibration of phash]" in calibration and "synthetic copies (orange)" in calibration
    neighbours = metadata["nearest_neighbours"]
    for title in ("nearest image by dhash", "nearest image by phash", "nearest image by embedding", "verifier on"):
        assert f"![{title}" in neighbours
    assert f"at or above the threshold {stored_threshold:.4g}" in neighbours
    with duckdb.connect(str(database), read_only=True) as connection:
        sampled, scored = connection.execute(
            "SELECT count(*), count(verifier_score) FROM nearest_neighbours"
        ).fetchone()
    assert sampled == 130 and scored > 0


def test_small_datasets_fall_back_to_fixed_thresholds(demo_run) -> None:
    _, connection, _ = demo_run
    sources = {row[0] for row in connection.execute("SELECT source FROM match_thresholds").fetchall()}
    assert len(sources) == 1 and next(iter(sources)).startswith("fallback: fewer than")


def test_running_a_drop_again_changes_nothing(demo_dataset, tmp_path: Path) -> None:
    import dagster as dg

    from dedup_pipeline.defs import PER_DROP_ASSETS
    from dedup_pipeline.defs.partitions import DROPS
    from dedup_pipeline.defs.resources import DUCKDB_RESOURCE_KEY, StoreDatabase
    from dedup_pipeline.lib.storage.store import Store

    root, _ = demo_dataset
    database = tmp_path / "db.duckdb"
    config = DedupConfig(data=str(root), embedding_model="none", workers=1)
    materialize(config, database)
    store = Store.beside(database)
    (drop,) = store.drops()
    files = {path: path.stat().st_mtime_ns for path in store.shard_folder(drop).iterdir()}
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(DROPS.name, [drop.key])
    again = dg.materialize(
        PER_DROP_ASSETS,
        partition_key=drop.key,
        resources={"dedup": config, DUCKDB_RESOURCE_KEY: StoreDatabase(database=str(database))},
        instance=instance,
    )
    assert again.success
    assert {path: path.stat().st_mtime_ns for path in store.shard_folder(drop).iterdir()} == files
    metadata = again.asset_materializations_for_node("image_features")[0].metadata
    assert metadata["extracted_before"].value is True
    materialize(config, database)  # and the global assets: the same rows, once
    with duckdb.connect(str(database), read_only=True) as connection:
        counts = connection.execute("SELECT count(*), count(DISTINCT path) FROM image_manifest").fetchone()
    assert counts[0] == counts[1] == 28
