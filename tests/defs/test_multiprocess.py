"""The whole graph under Dagster's multiprocess executor: every step in its own process, the
database steps free to start together (this instance sets no pool limit), so only the store's write
lock keeps them apart. The result must equal an in-process run's."""

import os
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from dedup_pipeline.cli import materialize
from dedup_pipeline.defs import build_definitions
from dedup_pipeline.defs.partitions import DROPS
from dedup_pipeline.defs.resources import DedupConfig, store_of
from dedup_pipeline.lib.inputs.changes import register_changes
from tests.conftest import encoded, smooth_picture

CONTRACT_QUERIES = {
    "duplicate_pairs": "SELECT * FROM duplicate_pairs ORDER BY ALL",
    "dedup_manifest": "SELECT * FROM dedup_manifest ORDER BY ALL",
    "image_errors": "SELECT * FROM image_errors ORDER BY ALL",
    "label_conflicts": "SELECT * FROM label_conflicts ORDER BY ALL",
}


def _config() -> DedupConfig:
    return DedupConfig(data=os.environ["DEDUP_DATA"], embedding_model="none", workers=1)


def whole_graph_job() -> dg.JobDefinition:
    """Every asset in one job under the multiprocess executor (each step's process rebuilds it)."""
    job = dg.define_asset_job(
        "whole_graph", selection=dg.AssetSelection.all(), executor_def=dg.multiprocess_executor, partitions_def=DROPS
    )
    definitions = build_definitions(_config(), os.environ["DEDUP_DB"])
    return dg.Definitions.merge(definitions, dg.Definitions(jobs=[job])).resolve_job_def("whole_graph")


def _contract_rows(database: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(database), read_only=True) as connection:
        return {name: connection.execute(query).fetchall() for name, query in CONTRACT_QUERIES.items()}


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for split, label, name, seed in [
        ("train", "a", "0.png", 0),
        ("train", "a", "1.png", 1),
        ("train", "b", "2.png", 2),
        ("test", "a", "copy.png", 1),
        ("test", "b", "copy-relabelled.png", 2),
        ("test", "b", "3.png", 3),
    ]:
        (root / split / label).mkdir(parents=True, exist_ok=True)
        (root / split / label / name).write_bytes(encoded(smooth_picture(seed), "PNG"))
    (root / "test" / "b" / "broken.png").write_bytes(b"not a picture")
    return root


def test_the_multiprocess_executor_gives_the_in_process_result(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "multi.duckdb"
    monkeypatch.setenv("DEDUP_DATA", str(dataset))
    monkeypatch.setenv("DEDUP_DB", str(database))
    (tmp_path / "dagster_home").mkdir()
    instance = dg.DagsterInstance.local_temp(tempdir=str(tmp_path / "dagster_home"))
    (drop,) = register_changes(str(dataset), store_of(str(database))).drops
    instance.add_dynamic_partitions(DROPS.name, [drop.key])

    result = dg.execute_job(
        dg.reconstructable(whole_graph_job), instance=instance, tags={"dagster/partition": drop.key}
    )

    assert result.success
    steps = {event.step_key for event in result.all_events if event.event_type_value == "STEP_SUCCESS"}
    assert {"image_features", "similar_pairs", "dedup_manifest", "leak_report", "label_conflicts"} <= steps
    single = tmp_path / "single.duckdb"
    assert materialize(_config(), single).success
    multi_rows, single_rows = _contract_rows(database), _contract_rows(single)
    assert multi_rows == single_rows
    assert len(multi_rows["duplicate_pairs"]) == 2 and len(multi_rows["image_errors"]) == 1
    assert len(multi_rows["dedup_manifest"]) == 6
