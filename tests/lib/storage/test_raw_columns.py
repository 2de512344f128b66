"""Raw fixed-width columns mapped in place where the file's pages allow it, and decoded otherwise."""

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dedup_pipeline.lib.storage import raw_columns
from dedup_pipeline.lib.storage.raw_columns import mapped_column, raw_write_options


def table(rows: np.ndarray, nullable: bool = False) -> pa.Table:
    width = rows.shape[1] * rows.itemsize
    values = pa.Array.from_buffers(pa.binary(width), len(rows), [None, pa.py_buffer(np.ascontiguousarray(rows))])
    schema = pa.schema(
        [pa.field("image_id", pa.int64()), pa.field("path", pa.string()), pa.field("raw", values.type, nullable)]
    )
    return pa.Table.from_arrays(
        [pa.array(np.arange(len(rows))), pa.array([f"p{k}" for k in range(len(rows))]), values], schema=schema
    )


def test_mapped_pages_are_the_written_rows_across_pages_and_row_groups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = np.random.default_rng(0).normal(size=(1000, 7)).astype("<f4")
    monkeypatch.setattr(raw_columns, "MAX_PAGE_BYTES", 28 * 90)  # 90 rows a page
    path = tmp_path / "embeddings.parquet"
    written = table(rows)
    pq.write_table(written, path, row_group_size=400, **raw_write_options(written, ["raw"]))
    pages = mapped_column(path, "raw")
    assert pages is not None and len(pages) > 3
    assert np.array_equal(np.concatenate(pages).view("<f4"), rows)
    assert all(isinstance(page.base, np.memmap) or isinstance(page, np.memmap) for page in pages)
    # still ordinary Parquet
    blobs = duckdb.sql(f"SELECT raw FROM '{path}' ORDER BY image_id").fetchall()
    assert np.array_equal(np.frombuffer(b"".join(blob for (blob,) in blobs), "<f4").reshape(rows.shape), rows)


def test_other_layouts_are_left_to_the_decoder(tmp_path: Path) -> None:
    rows = np.arange(40, dtype=np.uint8).reshape(10, 4)
    for name, written, options in [
        ("defaults", table(rows), {}),  # dictionary encoded, snappy
        ("compressed", table(rows), {**raw_write_options(table(rows), ["raw"]), "compression": "zstd"}),
        ("nullable", table(rows, nullable=True), {"compression": "none", "use_dictionary": False}),
    ]:
        path = tmp_path / f"{name}.parquet"
        pq.write_table(written, path, **options)
        assert mapped_column(path, "raw") is None, name
    assert mapped_column(tmp_path / "defaults.parquet", "path") is None  # not fixed-width
    assert mapped_column(tmp_path / "defaults.parquet", "missing") is None


def test_raw_columns_must_be_fixed_width_and_never_null() -> None:
    with pytest.raises(ValueError, match="not nullable"):
        raw_write_options(table(np.zeros((2, 4), np.uint8), nullable=True), ["raw"])
    with pytest.raises(ValueError, match="not nullable"):
        raw_write_options(table(np.zeros((2, 4), np.uint8)), ["path"])
    assert raw_write_options(table(np.zeros((2, 4), np.uint8)), ["elsewhere"])["use_dictionary"] == [
        "image_id",
        "path",
        "raw",
    ]


def test_an_empty_column_maps_to_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    empty = table(np.zeros((0, 4), np.uint8))
    pq.write_table(empty, path, **raw_write_options(empty, ["raw"]))
    pages = mapped_column(path, "raw")
    assert pages is not None and sum(len(page) for page in pages) == 0
