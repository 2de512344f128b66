"""The static HTML report: a folder a person opens in a browser, with nothing loaded from outside it.

``index.html`` is the summary (counts, the leak report per split pair, the thresholds and the
verifier's expected precision, decode errors by reason). ``leaks.html``, ``conflicts.html`` and
``clusters.html`` are table pages: their rows come from ``data/<page>.js`` and are shown a page at a
time with filters (``report.js``), each image as its stored thumbnail (``thumbs/<image id>.png``,
one small file per image shown, loaded lazily), so the report stays light at many thousands of rows.

Names, labels and splits are untrusted: the summary escapes every value, the data files are JSON
with every non-ASCII character escaped, and ``report.js`` puts values into the page as text only.
The folder is written beside the target and swapped into place, so a reader never sees half a
report.
"""

from __future__ import annotations

import datetime
import hashlib
import html
import io
import json
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
from PIL import Image

from dedup_pipeline.lib.features.thumbnails import THUMBNAIL_SIDE
from dedup_pipeline.lib.reporting.histograms import Histogram, svg
from dedup_pipeline.lib.reporting.report_tables import ReportTables, read_report_tables, read_thumbnails

PAGE_SIZE = 100
STATIC_FILES = ("report.js", "report.css")


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    kind: str = "text"  # text, number, image (a path shown with the thumbnail of column ``image``), flag
    image: str | None = None
    hidden: bool = False


@dataclass(frozen=True)
class Filter:
    name: str
    label: str
    keys: tuple[str, ...]
    contains: bool = False  # a text box matching part of the value, else a list of the values


@dataclass(frozen=True)
class TablePage:
    name: str
    title: str
    noun: str
    note: str
    columns: tuple[Column, ...]
    filters: tuple[Filter, ...]
    pair: tuple[str, str] | None = None  # the columns naming the pair a person can mark, if any


_PAIR_SCORES = (
    Column("hamming", "Hamming", "number"),
    Column("cosine", "cosine", "number"),
    Column("verification_score", "verifier score", "number"),
    Column("copy_probability", "copy probability", "number"),
    Column("evidence", "evidence"),
)


def _pair_columns(first: str, second: str) -> tuple[Column, ...]:
    return (
        Column("image_id_a", "", hidden=True),
        Column("image_id_b", "", hidden=True),
        Column("path_a", first, "image", image="image_id_a"),
        Column("split_a", "split"),
        Column("label_a", "label"),
        Column("path_b", second, "image", image="image_id_b"),
        Column("split_b", "split"),
        Column("label_b", "label"),
        *_PAIR_SCORES,
    )


def _pair_filters(splits: str, by_evidence: bool = True) -> tuple[Filter, ...]:
    """Filters of a page of pairs: the two splits (``splits`` names their roles), a label either
    image has, and the evidence."""
    return (
        Filter("splits", splits, ("split_a", "split_b")),
        Filter("label", "label contains", ("label_a", "label_b"), contains=True),
        *((Filter("evidence", "evidence", ("evidence",)),) if by_evidence else ()),
    )


PAGES = (
    TablePage(
        "leaks",
        "Leaks",
        "leaked pairs",
        "Each evaluation image beside its duplicate in a higher-priority split, most certain first "
        "(exact copies, then by the verifier's copy probability).",
        _pair_columns("evaluation image", "duplicate in the reference split"),
        _pair_filters("splits (evaluation / reference)"),
        ("path_a", "path_b"),
    ),
    TablePage(
        "latest",
        "Latest drop",
        "pairs with a new image",
        "The duplicate pairs of the images the latest drop brought, each new image beside its duplicate, most "
        "certain first.",
        _pair_columns("new image", "its duplicate"),
        _pair_filters("splits (new / duplicate)"),
        ("path_a", "path_b"),
    ),
    TablePage(
        "conflicts",
        "Label conflicts",
        "conflicting pairs",
        "Duplicate pairs whose labels differ, grouped by duplicate cluster: one of the labels is probably wrong.",
        (Column("cluster_id", "cluster", "number"), *_pair_columns("image", "its duplicate")),
        _pair_filters("splits", by_evidence=False),
        ("path_a", "path_b"),
    ),
    TablePage(
        "clusters",
        "Clusters within a split",
        "images in clusters",
        "Duplicate clusters whose images all lie in one split; the dedup manifest keeps the representative.",
        (
            Column("cluster_id", "cluster", "number"),
            Column("image_id", "", hidden=True),
            Column("path", "image", "image", image="image_id"),
            Column("split", "split"),
            Column("label", "label"),
            Column("is_representative", "kept", "flag"),
            Column("linked_to", "", hidden=True),
            Column("cluster_size", "cluster size", "number"),
            Column("link_hamming", "link Hamming", "number"),
            Column("link_cosine", "link cosine", "number"),
        ),
        (
            Filter("split", "split", ("split",)),
            Filter("label", "label contains", ("label",), contains=True),
        ),
        ("path", "linked_to"),  # an image and the duplicate it joined its cluster through
    ),
    TablePage(
        "marks",
        "Marks",
        "marked pairs",
        "The marks people made, which every run applies (table pair_overrides), and what each did on the last run. "
        "Press a pressed verdict to take the mark back: the download then says clear.",
        (
            Column("image_id_a", "", hidden=True),
            Column("image_id_b", "", hidden=True),
            Column("path_a", "image", "image", image="image_id_a"),
            Column("path_b", "image", "image", image="image_id_b"),
            Column("verdict", "verdict"),
            Column("effect", "what it did"),
            Column("note", "note"),
        ),
        (
            Filter("verdict", "verdict", ("verdict",)),
            Filter("path", "path contains", ("path_a", "path_b"), contains=True),
        ),
        ("path_a", "path_b"),
    ),
)


REPORT_SUFFIX = ".report"


def report_folder_of(database: str | Path) -> Path:
    """Where a database's report goes by default: ``results.duckdb`` -> ``results.report/``."""
    database = Path(database)
    return database.with_name(database.stem + REPORT_SUFFIX)


def report_from_database(connection: duckdb.DuckDBPyConnection, target: Path, source: str) -> tuple[Path, ReportTables]:
    """Read what the report shows from ``connection`` and write it to ``target``: (index page, tables)."""
    tables = read_report_tables(connection)
    return write_report(tables, read_thumbnails(connection, tables.image_ids()), target, source), tables


def write_report(tables: ReportTables, thumbnails: Mapping[int, bytes], target: Path, source: str) -> Path:
    """Write the report folder ``target`` (replacing an earlier one whole); return its index page.
    Thumbnails the earlier report already has are linked, not drawn again (an image id names its
    content: the same id, the same picture)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    building = target.with_name(f".building-{target.name}.{uuid.uuid4().hex[:8]}")
    try:
        (building / "data").mkdir(parents=True)
        (building / "thumbs").mkdir()
        for name in STATIC_FILES:
            (building / name).write_text(resources.files(__package__).joinpath("static", name).read_text())
        (building / "index.html").write_text(_summary_page(tables, source))
        frames = {
            "leaks": tables.leaks,
            "latest": tables.latest_pairs,
            "conflicts": tables.conflicts,
            "clusters": tables.clusters,
            "marks": tables.marks,
        }
        latest = (
            f"Drop {tables.latest_drop}."
            if tables.latest_drop
            else "No drop after the first: every finding is on the other pages."
        )
        for page in PAGES:
            subtitle = latest if page.name == "latest" else ""
            (building / f"{page.name}.html").write_text(_table_page(page, len(frames[page.name]), subtitle))
            (building / "data" / f"{page.name}.js").write_text(_table_data(page, frames[page.name]))
        (building / "data" / "stored-marks.js").write_text(_stored_marks(tables.marks, source))
        for image_id, raw in thumbnails.items():
            _write_thumbnail(building / "thumbs" / f"{int(image_id)}.png", target / "thumbs", raw)
        _swap_into_place(building, target)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return target / "index.html"


def _write_thumbnail(path: Path, earlier: Path, raw: bytes) -> None:
    try:
        os.link(earlier / path.name, path)
    except OSError:  # no earlier report, a new image, or another filesystem
        path.write_bytes(_png(raw))


def _stored_marks(marks: pl.DataFrame, source: str) -> str:
    """The marks the store keeps (pressed in the pages) and the browser-storage key of this
    report's own marks: one per database, so the marks made on one dataset's report never reach
    another's download."""
    key = "dedup-pipeline marks " + hashlib.sha256(str(source).encode()).hexdigest()[:16]
    return _script_assignment(
        "REPORT_MARKS", {"key": key, "stored": marks.select("path_a", "path_b", "verdict").rows()}
    )


def _script_assignment(name: str, value: object) -> str:
    data = json.dumps(value, ensure_ascii=True, default=str)
    # < > & only ever occur inside JSON strings: escaped, the data could not end a script element
    # even if it were inlined
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f"window.{name} = {data};\n"


def _swap_into_place(building: Path, target: Path) -> None:
    retired = target.with_name(f".retired-{target.name}.{uuid.uuid4().hex[:8]}")
    if target.exists():
        target.rename(retired)
    building.rename(target)
    shutil.rmtree(retired, ignore_errors=True)


def _png(raw: bytes) -> bytes:
    pixels = np.frombuffer(raw, dtype=np.uint8).reshape(THUMBNAIL_SIDE, THUMBNAIL_SIDE, 3)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def _escaped(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape("" if value is None else str(value), quote=True)


def _html_table(frame: pl.DataFrame) -> str:
    head = "".join(f"<th>{_escaped(name)}</th>" for name in frame.columns)
    rows = "".join("<tr>" + "".join(f"<td>{_escaped(v)}</td>" for v in row) + "</tr>" for row in frame.rows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _page(title: str, body: str, scripts: Sequence[str] = ()) -> str:
    navigation = " ".join(
        f'<a href="{name}.html">{_escaped(label)}</a>'
        for name, label in (("index", "Summary"), *((page.name, page.title) for page in PAGES))
    )
    script_tags = "".join(f'<script src="{name}"></script>' for name in scripts)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'self'; img-src 'self'; "
        "script-src 'self'; style-src 'self'\">"
        f'<title>{_escaped(title)}</title><link rel="stylesheet" href="report.css"></head>'
        f'<body><nav class="top">{navigation}</nav><h1>{_escaped(title)}</h1>{body}{script_tags}</body></html>'
    )


def _summary_page(tables: ReportTables, source: str) -> str:
    counts = pl.DataFrame(tables.counts, schema=["what", "count"], orient="row")
    verifier = tables.verifier
    verifier_line = (
        f"<p>Pair verifier: a pair is a copy when its probability is at least "
        f"{_escaped(verifier['operating_threshold'])}; its first join expected "
        f"{_escaped(verifier['expected_precision'])} of its flags to be real copies.</p>"
        if verifier and verifier.get("expected_precision") is not None
        else "<p>No pair verifier: pairs are decided by the thresholds alone.</p>"
    )
    latest = (
        f"<p>Drop {_escaped(tables.latest_drop)}: {tables.latest_pairs.height:,} duplicate pairs with its images "
        '(<a href="latest.html">Latest drop</a>).</p>'
        if tables.latest_drop
        else "<p>One drop so far.</p>"
    )
    generated = datetime.datetime.now().isoformat(timespec="seconds")
    body = (
        f'<p class="note">From {_escaped(source)}, written {_escaped(generated)}.</p>'
        f"<h2>Counts</h2>{_html_table(counts)}"
        f"<h2>Latest drop</h2>{latest}"
        f"<h2>Leaks per split pair</h2>{_html_table(tables.leak_report)}"
        f"<h2>Thresholds</h2>{_html_table(tables.thresholds)}{verifier_line}"
        f"<h2>Nearest neighbours</h2>{_neighbour_section(tables.neighbour_plots)}"
        f"<h2>Inputs that are not images, by reason</h2>{_html_table(tables.errors_by_reason.head(50))}"
        f"<h2>Pairs marked by a person</h2>{_marks_section(tables.marks)}"
    )
    return _page("Duplicate report", body)


MARKS_BAR = (
    '<div id="marks" class="marks"><span id="marks-count">no marks yet</span> '
    '<button id="download-marks">download marks (CSV)</button> <button id="forget-marks">forget marks</button> '
    '<span class="note">Your verdicts are kept in this browser for every page of the report. Apply them with '
    "<code>dedup-pipeline run --overrides marks.csv</code>: every later run keeps them.</span></div>"
)


def _neighbour_section(histograms: list[Histogram]) -> str:
    if not histograms:
        return "<p>No sample yet (written by the join).</p>"
    figures = "".join(
        f'<figure class="plot">{svg(histogram)}<figcaption>{_escaped(histogram.caption())}</figcaption></figure>'
        for histogram in histograms
    )
    return (
        '<p class="note">For a sample of images (the same ones every run), the distance to the nearest other '
        "image, with the threshold drawn: copies pile up near distance 0 (similarity 1), apart from the distinct "
        "images; a threshold in the gap separates them.</p>"
        f'<div class="plots">{figures}</div>'
    )


def _marks_section(marks: pl.DataFrame) -> str:
    if not marks.height:
        return (
            "<p>None. Mark pairs on the other pages (duplicate / not duplicate), download the marks and run "
            "<code>dedup-pipeline run --overrides marks.csv</code>.</p>"
        )
    effects = marks.group_by("verdict", "effect").len("marks").sort("verdict", "effect")
    return (
        f'<p>{marks.height:,} marks, applied by every run (<a href="marks.html">Marks</a>, table '
        f"<code>pair_overrides</code>).</p>{_html_table(effects)}"
    )


def _table_page(page: TablePage, rows: int, subtitle: str) -> str:
    headers = [column.label for column in page.columns if not column.hidden] + (["your verdict"] if page.pair else [])
    body = (
        f'<p class="note">{_escaped(subtitle)} {_escaped(page.note)}</p>'
        + (MARKS_BAR if page.pair else "")
        + '<div id="filters"></div>'
        f'<p><span id="count">{rows} {_escaped(page.noun)}</span></p>'
        '<div class="pager"><button id="previous">previous</button> <span id="page"></span> '
        '<button id="next">next</button></div>'
        "<table><thead><tr>"
        + "".join(f"<th>{_escaped(label)}</th>" for label in headers)
        + '</tr></thead><tbody id="rows"></tbody></table>'
    )
    return _page(page.title, body, scripts=(f"data/{page.name}.js", "data/stored-marks.js", "report.js"))


def _table_data(page: TablePage, frame: pl.DataFrame) -> str:
    keys = [column.key for column in page.columns]
    floats = [name for name in keys if frame.schema[name].is_float()]
    # image ids are 63-bit: as JSON numbers JavaScript would round them, so they travel as text
    ids = [column.image for column in page.columns if column.image]
    rows = frame.with_columns(pl.col(floats).fill_nan(None), pl.col(ids).cast(pl.String)).select(keys).rows()
    spec = {
        "noun": page.noun,
        "pageSize": PAGE_SIZE,
        "columns": [
            {"key": c.key, "label": c.label, "kind": c.kind, "image": c.image, "hidden": c.hidden} for c in page.columns
        ],
        "filters": [
            {"name": f.name, "label": f.label, "keys": list(f.keys), "contains": f.contains} for f in page.filters
        ],
        "pair": list(page.pair) if page.pair else None,
        "rows": rows,
    }
    return _script_assignment("REPORT_TABLE", spec)
