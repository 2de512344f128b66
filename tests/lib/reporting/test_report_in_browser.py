"""The report as a person sees it: Debian's chromium renders each page headless (``--dump-dom``
after the page's scripts ran), and its console is read from chromium's log."""

import json
import re
import subprocess
import urllib.parse
from pathlib import Path

import duckdb
import pytest

from dedup_pipeline.cli import EXIT_CHECK_FAILED, main
from dedup_pipeline.lib.decisions.overrides import read_marks
from dedup_pipeline.lib.reporting.html_report import report_folder_of
from tests.lib.reporting.conftest import HOSTILE_FILE, HOSTILE_LABEL
from tests.lib.reporting.devtools import CHROMIUM, DevTools

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run installs it)"
)


def render(page: Path, fragment: str = "") -> tuple[str, list[str]]:
    """The page's DOM after its scripts ran, and every console message it logged."""
    url = page.as_uri() + (f"#{fragment}" if fragment else "")
    finished = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    console = [line for line in finished.stderr.splitlines() if ":CONSOLE" in line]
    return finished.stdout, console


def body_numbers(dom: str) -> dict[str, int]:
    body = re.search(r"<body([^>]*)>", dom).group(1)
    return {name: int(value) for name, value in re.findall(r'data-([a-z-]+)="(\d+)"', body)}


def test_every_page_loads_without_console_messages(hostile_report) -> None:
    _, folder = hostile_report
    for name in ("index", "leaks", "latest", "conflicts", "clusters"):
        dom, console = render(folder / f"{name}.html")
        assert console == [], (name, console)
        assert "<h1>" in dom


def test_the_leaks_page_shows_every_leak_with_its_thumbnails(hostile_report) -> None:
    database, folder = hostile_report
    with duckdb.connect(str(database), read_only=True) as connection:
        leaks = connection.execute("SELECT count(*) FROM leaks").fetchone()[0]
    dom, _ = render(folder / "leaks.html")
    shown = body_numbers(dom)
    assert shown["rows-total"] == shown["rows-shown"] == leaks == 2
    assert shown["thumbnails-shown"] == 2 * leaks == shown["thumbnails-loaded"] and shown["thumbnails-broken"] == 0
    assert f"{leaks} of {leaks} leaked pairs" in dom


def test_filters_change_what_is_shown(hostile_report) -> None:
    database, folder = hostile_report
    dom, _ = render(folder / "leaks.html", "label=dog")
    assert body_numbers(dom)["rows-shown"] == 1 and "1 of 2 leaked pairs (filtered)" in dom
    with duckdb.connect(str(database), read_only=True) as connection:
        evidence = connection.execute("SELECT evidence, count(*) FROM leaks GROUP BY ALL ORDER BY ALL").fetchall()
    assert len(evidence) == 2  # an exact copy and a re-encoded one
    for value, count in evidence:
        dom, _ = render(folder / "leaks.html", "evidence=" + urllib.parse.quote(value))
        assert body_numbers(dom)["rows-shown"] == count


def test_hostile_names_appear_as_text(hostile_report) -> None:
    _, folder = hostile_report
    dom, console = render(folder / "leaks.html")
    assert console == []  # neither alert(1) ran nor a blocked script complained
    assert "<script>alert" not in dom and 'src="x"' not in dom and "onerror=" not in dom.replace("onerror=alert", "")
    escaped_file = HOSTILE_FILE.replace("<", "&lt;").replace(">", "&gt;")
    assert f"images/{escaped_file}</figcaption>" in dom  # shown as text, in full
    assert HOSTILE_LABEL.replace("<", "&lt;").replace(">", "&gt;") in dom


def click_verdict(browser: DevTools, session: str, path: str, verdict: str) -> None:
    """Click ``verdict`` on the row that shows ``path``."""
    browser.evaluate(
        session,
        "Array.from(document.querySelectorAll('#rows tr'))"
        f".find(row => Array.from(row.querySelectorAll('figcaption')).some(c => c.textContent === {json.dumps(path)}))"
        f".querySelector('button[data-verdict={json.dumps(verdict)}]').click()",
    )


def test_a_person_marks_pairs_downloads_the_marks_and_the_next_run_applies_them(hostile_report, tmp_path) -> None:
    database, folder = hostile_report
    hostile, copied = f"images/{HOSTILE_FILE}", "images/1.png"
    with DevTools(tmp_path / "profile", tmp_path / "downloads") as browser:
        leaks = browser.open(folder / "leaks.html")
        assert browser.evaluate(leaks, "document.body.dataset.marks") == "0"
        click_verdict(browser, leaks, hostile, "duplicate")
        click_verdict(browser, leaks, hostile, "not duplicate")  # changed my mind: one mark per pair
        click_verdict(browser, leaks, "images/exact.png", "duplicate")
        click_verdict(browser, leaks, "images/exact.png", "duplicate")  # pressed again: no mark
        assert browser.evaluate(leaks, "document.getElementById('marks-count').textContent") == "1 mark to download"
        pressed = "document.querySelectorAll('button.mark[aria-pressed=\"true\"]').length"
        assert browser.evaluate(leaks, pressed) == 1
        conflicts = browser.open(folder / "conflicts.html")  # the marks follow to every page
        assert browser.evaluate(conflicts, "document.body.dataset.marks") == "1"
        assert browser.evaluate(conflicts, pressed) == 1  # the same pair conflicts: shown marked there
        browser.evaluate(conflicts, "document.getElementById('download-marks').click()")
        downloaded = browser.downloaded("marks.csv")
        assert browser.problems == []
        first_marks = downloaded.rename(tmp_path / "first-marks.csv")
    marks = read_marks(first_marks)
    assert marks.select("path_a", "path_b", "verdict").rows() == [(copied, hostile, "not duplicate")]

    marked = tmp_path / "marked.duckdb"
    manifest = database.parent / "manifest.csv"

    def leaks_after_a_run_with(overrides: Path) -> list[tuple[str, str]]:
        options = ["--embedding-model", "none", "--workers", "1", "--overrides", str(overrides)]
        assert main(["run", "--data", str(manifest), "--db", str(marked), *options]) == EXIT_CHECK_FAILED
        with duckdb.connect(str(marked), read_only=True) as connection:
            return connection.execute("SELECT path_a, path_b FROM leaks ORDER BY ALL").fetchall()

    assert leaks_after_a_run_with(first_marks) == [("images/2.png", "images/exact.png")]

    # the new report shows the stored mark pressed on its marks page; taking it back downloads a clear
    folder = report_folder_of(marked)
    with DevTools(tmp_path / "profile", tmp_path / "downloads") as browser:
        marks_page = browser.open(folder / "marks.html")
        assert browser.evaluate(marks_page, "document.body.dataset.marks") == "0"  # this report's own marks
        pressed = "Array.from(document.querySelectorAll('button.mark[aria-pressed=\"true\"]')).map(b => b.textContent)"
        assert browser.evaluate(marks_page, pressed) == ["not duplicate"]
        click_verdict(browser, marks_page, hostile, "not duplicate")
        assert browser.evaluate(marks_page, pressed) == []
        browser.evaluate(marks_page, "document.getElementById('download-marks').click()")
        taken_back = browser.downloaded("marks.csv")
        assert browser.problems == []
    assert read_marks(taken_back).select("path_a", "path_b", "verdict").rows() == [(copied, hostile, "clear")]
    assert leaks_after_a_run_with(taken_back) == [(copied, hostile), ("images/2.png", "images/exact.png")]
