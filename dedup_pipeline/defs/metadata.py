"""Materialization metadata shown in the UI: row counts, a preview table, timings."""

from __future__ import annotations

import base64
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import polars as pl
from tqdm import tqdm

from dedup_pipeline.lib.reporting.histograms import Histogram, png
from dedup_pipeline.lib.runtime.memory import PeakMemory

PREVIEW_ROWS = 20


def preview(frame: pl.DataFrame, rows: int = PREVIEW_ROWS) -> dg.MetadataValue:
    """The first rows as a Markdown table (lists and arrays are left out)."""
    shown = frame.select(name for name, dtype in frame.schema.items() if not dtype.is_nested()).head(rows)
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "|" + "---|" * len(shown.columns)
    lines = [header, rule] + ["| " + " | ".join(_cell(value) for value in row) + " |" for row in shown.iter_rows()]
    if frame.height > rows:
        lines.append(f"\n{rows} of {frame.height:,} rows")
    return dg.MetadataValue.md("\n".join(lines))


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def plots(histograms: list[Histogram]) -> dg.MetadataValue:
    """Histograms as Markdown: each a PNG (a data URI, which the UI shows inline) and its caption."""
    blocks = [
        f"![{histogram.title}](data:image/png;base64,{base64.b64encode(png(histogram)).decode()})\n\n"
        f"{histogram.caption()}"
        for histogram in histograms
    ]
    return dg.MetadataValue.md("\n\n".join(blocks) if blocks else "nothing to plot")


def table_metadata(frame: pl.DataFrame, database: str, table: str, row_count: int | None = None) -> dict[str, object]:
    """Row count, location and a preview; ``frame`` may be just the first rows when ``row_count``
    gives the table's size."""
    return {
        "dagster/row_count": frame.height if row_count is None else row_count,
        "table": dg.MetadataValue.text(f"{table} in {database}"),
        "preview": preview(frame),
    }


@contextmanager
def timed(metadata: dict[str, object], key: str) -> Iterator[None]:
    """Record the block's wall time under ``key`` (``..._seconds``) and its peak resident memory,
    this process and its workers, under ``..._peak_rss_mb``."""
    start = time.perf_counter()
    with PeakMemory() as peak:
        yield
    metadata[key] = round(time.perf_counter() - start, 3)
    metadata[key.removesuffix("seconds") + "peak_rss_mb"] = round(peak.bytes / 2**20, 1)


class ProgressLogger:
    """Log progress every ``every`` seconds (and at the end) to the run log and, in a terminal (the
    CLI), also draw a progress bar on stderr: ``verb`` and ``noun`` say what is counted
    ("processed 1,200/60,000 images")."""

    def __init__(
        self,
        log: dg.DagsterLogManager,
        every: float = 15.0,
        bar: bool | None = None,
        noun: str = "images",
        verb: str = "processed",
    ) -> None:
        self._log, self._every, self._noun, self._verb = log, every, noun, verb
        self._start = self._last = time.perf_counter()
        self._bar: tqdm | None = None
        self._show_bar = sys.stderr.isatty() if bar is None else bar

    def __call__(self, done: int, total: int) -> None:
        """``done`` of ``total`` so far; 0 done (re)starts the clock the rate is measured from."""
        now = time.perf_counter()
        if done == 0:
            self._start = self._last = now
        if self._show_bar:
            if self._bar is None:
                self._bar = tqdm(
                    total=total, unit=self._noun.rstrip("s"), desc=self._noun, smoothing=0.05, dynamic_ncols=True
                )
            self._bar.update(done - self._bar.n)
            if done == total:
                self._bar.close()
        if done == total or now - self._last >= self._every:
            self._last = now
            rate = done / max(now - self._start, 1e-9)
            self._log.info(f"{self._verb} {done:,}/{total:,} {self._noun} ({rate:,.0f}/s)")


class JoinProgressLog:
    """A join's stages as lines in the run log, and the verifier's alignment of candidate pairs as
    a :class:`ProgressLogger` (bar and periodic lines)."""

    def __init__(self, log: dg.DagsterLogManager, every: float = 15.0, bar: bool | None = None) -> None:
        self._log = log
        self.aligned = ProgressLogger(log, every, bar, noun="pairs", verb="verifier aligned")

    def stage(self, description: str) -> None:
        self._log.info(description)
