"""A pipeline run whose names are hostile HTML, and the report it wrote."""

from pathlib import Path

import polars as pl
import pytest

from dedup_pipeline.cli import EXIT_CHECK_FAILED, main
from dedup_pipeline.lib.reporting.html_report import report_folder_of
from tests.conftest import encoded, smooth_picture

HOSTILE_FILE = "<img src=x onerror=alert(1)>.jpg"
HOSTILE_LABEL = '"><script>alert(1)</script>'


@pytest.fixture(scope="session")
def hostile_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(database, report folder) of a run on a manifest whose leaked copy has a file name and a label
    made of HTML."""
    root = tmp_path_factory.mktemp("hostile")
    rows = []
    for index in range(6):
        path = root / "images" / f"{index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encoded(smooth_picture(index), "PNG"))
        rows.append((f"images/{index}.png", "train", "cat" if index % 2 else "dog"))
    (root / "images" / HOSTILE_FILE).write_bytes(encoded(smooth_picture(1), "JPEG", quality=95))
    rows.append((f"images/{HOSTILE_FILE}", "test", HOSTILE_LABEL))
    (root / "images" / "exact.png").write_bytes((root / "images" / "2.png").read_bytes())
    rows.append(("images/exact.png", "test", "dog"))
    manifest = root / "manifest.csv"
    pl.DataFrame(rows, schema=["path", "split", "label"], orient="row").write_csv(manifest)
    database = root / "db.duckdb"
    code = main(["run", "--data", str(manifest), "--db", str(database), "--embedding-model", "none", "--workers", "1"])
    assert code == EXIT_CHECK_FAILED  # the leaks
    return database, report_folder_of(database)
