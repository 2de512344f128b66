from pathlib import Path

import duckdb

from dedup_pipeline.cli import EXIT_BAD_INPUT, EXIT_OK, main
from tests.lib.reporting.conftest import HOSTILE_FILE, HOSTILE_LABEL


def test_a_run_writes_the_report_with_every_page_data_file_and_thumbnail(hostile_report) -> None:
    database, folder = hostile_report
    for name in (
        "index.html",
        "leaks.html",
        "latest.html",
        "conflicts.html",
        "clusters.html",
        "report.js",
        "report.css",
    ):
        assert (folder / name).is_file(), name
    leaks = (folder / "data" / "leaks.js").read_text()
    with duckdb.connect(str(database), read_only=True) as connection:
        leak_count = connection.execute("SELECT count(*) FROM leaks").fetchone()[0]
        shown = {row[0] for row in connection.execute("SELECT image_id_a FROM similar_pairs").fetchall()}
    assert leak_count == 2 and leaks.count('"test"') == leak_count
    assert all((folder / "thumbs" / f"{image_id}.png").is_file() for image_id in shown)


def test_hostile_names_are_escaped_or_left_as_data(hostile_report) -> None:
    _, folder = hostile_report
    for page in folder.glob("*.html"):
        text = page.read_text()
        assert "<script>alert" not in text and "<img src=x" not in text, page.name
    data = "".join(path.read_text() for path in (folder / "data").glob("*.js"))
    assert "<" not in data and ">" not in data  # JSON with every such character escaped (\u003c)
    assert HOSTILE_FILE.replace("<", "\\u003c").replace(">", "\\u003e") in data
    assert HOSTILE_LABEL.replace('"', '\\"').replace("<", "\\u003c").replace(">", "\\u003e") in data


def test_the_report_command_writes_a_report_and_refuses_a_missing_database(
    hostile_report, tmp_path: Path, capsys
) -> None:
    database, _ = hostile_report
    assert main(["report", "--db", str(database), "--html", str(tmp_path / "again")]) == EXIT_OK
    assert f"HTML report: {tmp_path / 'again' / 'index.html'}" in capsys.readouterr().out
    assert (tmp_path / "again" / "leaks.html").is_file()
    assert main(["report", "--db", str(tmp_path / "none.duckdb")]) == EXIT_BAD_INPUT
    assert "no database at" in capsys.readouterr().err
