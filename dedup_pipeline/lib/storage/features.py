"""The live images' per-image arrays (hashes, thumbnails, view hashes, embeddings), read straight
from the drops' Parquet files with pyarrow, rows in path order.

The per-image views in DuckDB say the same, but going through them costs more than the work of a
small drop (DuckDB turns each row into its own list or blob value and back: 3 s for 60,000
embeddings here). Embeddings and thumbnails are mapped in place (``raw_columns``: 0.03 s for
60,000 embeddings, against 0.85 s decoded by pyarrow). The catalog, through the live manifest,
decides which row of which drop is live.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dedup_pipeline.lib.features.hashing import mirror_key
from dedup_pipeline.lib.storage.raw_columns import mapped_column
from dedup_pipeline.lib.storage.shards import VIEW_HASHES_COLUMN, array_rows, binary_rows
from dedup_pipeline.lib.storage.store import Drop, Store
from dedup_pipeline.lib.storage.stored_rows import Rows, StoredRows


def _hash_words(column: pa.ChunkedArray) -> np.ndarray:
    """A hash column (BIGINT, or BIGINT[] of words) as (rows, words) uint64."""
    if pa.types.is_integer(column.type):
        return column.to_numpy().astype(np.int64).reshape(-1, 1).view(np.uint64)
    return array_rows(column, np.int64).view(np.uint64)


ShardReader = Callable[[Path], tuple[np.ndarray, list[np.ndarray]]]


def _decoded(column: str, values: Callable[[pa.ChunkedArray], np.ndarray]) -> ShardReader:
    """A reader of ``values`` of a column decoded by pyarrow."""

    def read(path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
        # memory-mapped: pyarrow reads only the pages of the columns asked for
        table = pq.read_table(path, columns=["image_id", column], memory_map=True)
        return table.column("image_id").to_numpy(), [values(table.column(column))]

    return read


def _mapped(column: str, typed: Callable[[np.ndarray], np.ndarray]) -> ShardReader:
    """A reader of a fixed-size binary column as ``typed`` arrays of its (rows, bytes) pages, mapped
    in place where the file allows it (:func:`raw_columns.mapped_column`), else decoded."""

    def read(path: Path) -> tuple[np.ndarray, list[np.ndarray]]:
        pages = mapped_column(path, column)
        if pages is None:
            pages = [binary_rows(pq.read_table(path, columns=[column], memory_map=True).column(column), "u1")]
        ids = pq.read_table(path, columns=["image_id"], memory_map=True).column("image_id").to_numpy()
        return ids, [typed(page) for page in pages]

    return read


@dataclass(frozen=True)
class LiveImages:
    """The live images of a store: their manifest rows in path order (row k is position k of every
    array read here) and where each one's features are."""

    store: Store
    manifest: pl.DataFrame

    @classmethod
    def read(cls, connection: duckdb.DuckDBPyConnection, store: Store) -> LiveImages:
        return cls(store, connection.execute("SELECT * FROM image_manifest ORDER BY path").pl())

    @property
    def image_ids(self) -> np.ndarray:
        return self.manifest["image_id"].to_numpy()

    @cached_property
    def _drops(self) -> dict[int, Drop]:
        """The drops holding live images, by sequence number."""
        live = set(self.manifest["drop_seq"].unique().to_list())
        return {drop.sequence: drop for drop in self.store.drops() if drop.sequence in live}

    @cached_property
    def _id_order(self) -> np.ndarray:
        return np.argsort(self.image_ids, kind="stable")

    def _positions(self, ids: np.ndarray, sequence: int) -> np.ndarray:
        """Each id's position among the live images, -1 where it is not live in drop ``sequence``."""
        if not len(self.manifest):
            return np.full(len(ids), -1)
        sorted_ids = self.image_ids[self._id_order]
        found = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
        position = self._id_order[found]
        live = (sorted_ids[found] == ids) & (self.manifest["drop_seq"].to_numpy()[position] == sequence)
        return np.where(live, position, -1)

    def _stored(self, shard_table: str) -> set[str]:
        return set(pq.read_schema(self.store.shard_file(next(iter(self._drops.values())), shard_table)).names)

    def _rows(self, shard_table: str, read: ShardReader) -> Rows:
        """One array row per live image, in path order, from ``read`` (a shard file's image ids and
        its values in row order, in one or more arrays): that array when it is all of them in order
        (a first run), else the arrays of the drops seen as one (:class:`StoredRows`)."""
        parts, part, rows = [], np.full(len(self.manifest), -1, dtype=np.int32), np.zeros(len(self.manifest), np.int64)
        for sequence, drop in self._drops.items():
            ids, arrays = read(self.store.shard_file(drop, shard_table))
            positions = self._positions(ids, sequence)
            whole = len(self._drops) == 1 and len(arrays) == 1
            if whole and np.array_equal(positions, np.arange(len(self.manifest))):
                return arrays[0]
            starts = np.cumsum([0] + [len(array) for array in arrays])
            which = np.searchsorted(starts, np.arange(len(ids)), side="right") - 1
            live = positions >= 0
            part[positions[live]] = len(parts) + which[live]
            rows[positions[live]] = (np.arange(len(ids)) - starts[which])[live]
            parts.extend(arrays)
        if not parts or (part < 0).any():
            raise ValueError(f"the store's {shard_table} files lack rows of some live images")
        return StoredRows(parts, part, rows)

    def hashes(self, algorithms: list[str]) -> dict[str, np.ndarray]:
        """(images, words) uint64 per hash; the mirrored-picture hashes of these algorithms come
        along (under their mirror_key names) when they were stored."""
        if not self._drops:  # no live image: empty hashes
            return {name: np.zeros((0, 1), dtype=np.uint64) for name in algorithms}
        stored = self._stored("hashes")
        names = [name for algorithm in algorithms for name in (algorithm, mirror_key(algorithm)) if name in stored]
        return {name: np.asarray(self._rows("hashes", _decoded(name, _hash_words))) for name in names}

    def embeddings(self) -> Rows | None:
        """(images, dimension) float32, or None when embeddings are off."""
        files = [self.store.shard_file(drop, "embeddings") for drop in self._drops.values()]
        if not files or sum(pq.read_metadata(path).num_rows for path in files) == 0:
            return None
        # float32 rows must be aligned for BLAS: a mapped page at an odd offset is copied once
        # (into numpy's memory, cheap to fill: 0.05 s for 60,000)
        aligned = _mapped("embedding", lambda page: np.require(page.view("<f4"), requirements="A"))
        return self._rows("embeddings", aligned)

    def thumbnails(self) -> Rows:
        """(images, side, side, 3) uint8."""
        if not self._drops:
            return np.zeros((0, 32, 32, 3), dtype=np.uint8)

        def pictures(flat: np.ndarray) -> np.ndarray:
            side = int(round((flat.shape[1] / 3) ** 0.5))
            return flat.reshape(len(flat), side, side, 3)

        return self._rows("thumbnails", _mapped("thumbnail", pictures))

    def view_hashes(self) -> np.ndarray | None:
        """The stored view hashes, or None when the store was built without them."""
        if not self._drops or VIEW_HASHES_COLUMN not in self._stored("thumbnails"):
            return None
        words = self._rows("thumbnails", _decoded(VIEW_HASHES_COLUMN, lambda column: array_rows(column, np.int64)))
        return np.asarray(words).view(np.uint64)  # small: one array
