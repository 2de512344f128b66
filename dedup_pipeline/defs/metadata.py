"""Materialization metadata shown in the UI: row counts, a preview table, timings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import polars as pl

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
    start = time.perf_counter()
    yield
    metadata[key] = round(time.perf_counter() - start, 3)


class ProgressLogger:
    """Log extraction progress every ``every`` seconds (and at the end) to the run log."""

    def __init__(self, log: dg.DagsterLogManager, every: float = 15.0) -> None:
        self._log, self._every = log, every
        self._start = self._last = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == total or now - self._last >= self._every:
            self._last = now
            rate = done / max(now - self._start, 1e-9)
            self._log.info(f"processed {done:,}/{total:,} images ({rate:,.0f}/s)")
