"""A run killed with SIGKILL (its process group: decode workers too) right before its shard write
and right before its join's database write, then run again, ends with the tables of a run that was
never interrupted; after each kill a reader finds whole tables and whole shards. The runs use the
test session's Dagster instance, whose ``duckdb`` pool is limited to one step as in the project's."""

import re
import sys
from pathlib import Path

import pytest

from dedup_pipeline.stress.commands import finish, kill_when, start
from dedup_pipeline.stress.tables import compare, integrity, read_tables
from tests.conftest import encoded, smooth_picture

KILL_POINTS = (re.compile(r"processed [\d,]+/[\d,]+ images"), re.compile(r"joined [\d,]+ new images"))


def _run(data: Path, database: Path) -> list[str]:
    arguments = ["run", "--data", str(data), "--db", str(database), "--embedding-model", "none", "--workers", "1"]
    return [sys.executable, "-m", "dedup_pipeline.cli", *arguments]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for index in range(12):
        path = root / ("train" if index < 9 else "test") / "a" / f"{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encoded(smooth_picture(index % 10), "PNG"))  # 10 and 11 copy 0 and 1
    (root / "test" / "a" / "broken.png").write_bytes(b"broken")
    return root


def test_a_run_killed_twice_and_resumed_equals_an_uninterrupted_run(dataset: Path, tmp_path: Path) -> None:
    reference, killed = tmp_path / "reference.duckdb", tmp_path / "killed.duckdb"
    assert finish(start(_run(dataset, reference), tmp_path / "r.log")) == 1  # the leaks
    for number, point in enumerate(KILL_POINTS):
        log = tmp_path / f"killed-{number}.log"
        assert kill_when(start(_run(dataset, killed), log), point, delay=0.0, timeout=120) == "killed"
        after = integrity(killed)
        assert after.database_opens and after.incomplete_shards == 0 and after.repeated_images == 0, after
    resumed = start(_run(dataset, killed), tmp_path / "k.log")
    assert finish(resumed) == 1
    # each killed run, left "started" in the instance (its slot of the duckdb pool, limit 1, too), was
    # released by the next run rather than waited for forever
    logs = "".join(log.read_text() for log in tmp_path.glob("*.log"))
    assert logs.count("released run") == len(KILL_POINTS)
    differences = compare(read_tables(reference), read_tables(killed))
    assert all(d.lost == d.extra == d.repeated == 0 for d in differences.values()), differences
    assert differences["duplicate_pairs"].rows == 2 and differences["image_errors"].rows == 1
