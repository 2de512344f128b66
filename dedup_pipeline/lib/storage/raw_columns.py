"""Fixed-width columns of the store's Parquet files read in place: memory-mapped, never decoded.

pyarrow decodes a FIXED_LEN_BYTE_ARRAY column into fresh memory of its own pool even from a
memory-mapped file, and fresh pages are what costs on these machines: reading 59,400 embeddings
(1,280 float32 each, 304 MB) took 0.85-1.05 s, against 0.03 s to map the same bytes and touch every
page (numpy's own large arrays are cheap to fill too: it asks for transparent huge pages). A drop's
join and a ``check`` read every stored embedding and thumbnail, so that was most of their reading.

So the store writes its raw columns as uncompressed PLAIN data pages without levels (a required
column, no dictionary, no page statistics): each page's values are then its last bytes, back to
back, and the file stays ordinary Parquet that DuckDB reads like any other. The reader does not
trust the writer: it walks the column chunk's page headers (Thrift compact protocol, a few integer
fields; a library for that, fastparquet, would bring pandas, cramjam and fsspec along) and maps the
pages only where every header says exactly that layout. Otherwise (files written before this
layout, or by another writer) :func:`mapped_column` returns None and the caller decodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DATA_PAGE, PLAIN, UNCOMPRESSED = 0, 0, "UNCOMPRESSED"
# Thrift field ids (parquet.thrift): PageHeader and DataPageHeader.
PAGE_TYPE, UNCOMPRESSED_SIZE, COMPRESSED_SIZE, DATA_PAGE_HEADER = 1, 2, 3, 5
NUM_VALUES, ENCODING = 1, 2
# The writer holds a page in memory; a page of at most this many bytes keeps a drop of 60,000
# embeddings in one page (and one array when read) and bounds the writer's extra memory.
MAX_PAGE_BYTES = 1 << 30


def raw_write_options(table: pa.Table, raw_columns: list[str]) -> dict[str, Any]:
    """``pyarrow.parquet.write_table`` arguments that keep ``raw_columns`` (fixed-size binary,
    not nullable; those the table has) mappable: uncompressed, PLAIN, version 1 data pages of up to
    MAX_PAGE_BYTES, no statistics."""
    others = [name for name in table.column_names if name not in raw_columns]
    widest = 1
    for name in set(raw_columns) & set(table.column_names):
        field = table.schema.field(name)
        if not pa.types.is_fixed_size_binary(field.type) or field.nullable:
            raise ValueError(f"raw column {name!r} must be a fixed-size binary that is not nullable")
        widest = max(widest, field.type.byte_width)
    rows_per_page = max(1, min(table.num_rows, MAX_PAGE_BYTES // widest))
    return {
        "data_page_size": rows_per_page * widest,
        "max_rows_per_page": rows_per_page,
        "compression": "none",
        "use_dictionary": others,
        "write_statistics": others,
        "data_page_version": "1.0",
    }


def _varint(buffer: np.ndarray, position: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = int(buffer[position])
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _skip(buffer: np.ndarray, position: int, kind: int) -> int:
    """Past one compact-protocol value of type ``kind``."""
    if kind in (1, 2):  # booleans live in the field header
        return position
    if kind == 3:
        return position + 1
    if kind in (4, 5, 6):
        return _varint(buffer, position)[1]
    if kind == 7:
        return position + 8
    if kind == 8:
        length, position = _varint(buffer, position)
        return position + length
    if kind in (9, 10):  # list, set
        header = int(buffer[position])
        position += 1
        size, element = header >> 4, header & 0x0F
        if size == 15:
            size, position = _varint(buffer, position)
        for _ in range(size):
            position = position + 1 if element in (1, 2) else _skip(buffer, position, element)
        return position
    if kind == 11:  # map
        size, position = _varint(buffer, position)
        if size:
            key, value = int(buffer[position]) >> 4, int(buffer[position]) & 0x0F
            position += 1
            for _ in range(size):
                position = _skip(buffer, _skip(buffer, position, key), value)
        return position
    if kind == 12:
        return _struct(buffer, position)[1]
    raise ValueError(f"not a Thrift compact type: {kind}")


def _struct(buffer: np.ndarray, position: int) -> tuple[dict[int, Any], int]:
    """A compact-protocol struct: its integer and struct fields by id (others skipped), and the
    position after it."""
    fields: dict[int, Any] = {}
    last = 0
    while True:
        header = int(buffer[position])
        position += 1
        if header == 0:
            return fields, position
        kind, delta = header & 0x0F, header >> 4
        if delta:
            last += delta
        else:
            zigzag, position = _varint(buffer, position)
            last = (zigzag >> 1) ^ -(zigzag & 1)
        if kind in (4, 5, 6):
            zigzag, position = _varint(buffer, position)
            fields[last] = (zigzag >> 1) ^ -(zigzag & 1)
        elif kind == 12:
            fields[last], position = _struct(buffer, position)
        else:
            position = _skip(buffer, position, kind)


def mapped_column(path: Path, column: str) -> list[np.ndarray] | None:
    """The values of a fixed-size binary ``column`` as (rows, width) uint8 views of the memory-mapped
    file, one per data page in row order, or None where the file does not hold the column as plain
    pages without levels (then decode it)."""
    metadata = pq.read_metadata(path)
    names = [metadata.schema.column(index).path for index in range(metadata.num_columns)]
    if column not in names:
        return None
    index = names.index(column)
    described = metadata.schema.column(index)
    if (
        described.physical_type != "FIXED_LEN_BYTE_ARRAY"
        or described.max_definition_level
        or described.max_repetition_level
    ):
        return None
    width = described.length
    if metadata.num_rows == 0:
        return [np.zeros((0, width), dtype=np.uint8)]
    data = np.memmap(path, dtype=np.uint8, mode="r")
    pages = []
    for group in range(metadata.num_row_groups):
        chunk = metadata.row_group(group).column(index)
        if chunk.compression != UNCOMPRESSED or chunk.has_dictionary_page:
            return None
        position, end, rows = chunk.data_page_offset, chunk.data_page_offset + chunk.total_compressed_size, 0
        while position < end:
            header, start = _struct(data, position)
            page = header.get(DATA_PAGE_HEADER, {})
            count = page.get(NUM_VALUES, -1)
            size = header.get(COMPRESSED_SIZE)
            if (
                header.get(PAGE_TYPE) != DATA_PAGE
                or page.get(ENCODING) != PLAIN
                or size != header.get(UNCOMPRESSED_SIZE)
                or size != count * width
            ):
                return None
            pages.append(data[start : start + size].reshape(count, width))
            position, rows = start + size, rows + count
        if position != end or rows != metadata.row_group(group).num_rows:
            return None
    return pages
