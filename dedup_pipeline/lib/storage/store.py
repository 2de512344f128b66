"""The store: a folder beside the database that holds every per-image output as Parquet files, one
set per data drop, so that drops can be extracted by separate processes (or machines) while DuckDB,
which allows one writing process per file, only reads them.

Layout of ``<database stem>.store/``::

    settings.json           the extraction settings every drop is extracted with (fixed by the first)
    write.lock              held by the one process writing the store and its database (write_lock)
    drops/<key>.parquet      a drop's registration: the file events it covers (added, changed,
                             deleted, problem), written once when the drop is registered
    shards/<key>/            what extracting the drop produced: manifest, failures, hashes,
                             thumbnails and embeddings, one Parquet file each

``<key>`` is ``<sequence number>-<name>`` (``000003-2026-11-29``): keys sort in registration order,
which decides which event of a file is its latest. Every file is written under a temporary name and
renamed into place, and a drop's shard folder is renamed into place whole, so a reader sees a
drop completely or not at all; a killed writer leaves only a temporary name behind, which the next
writer of the same file or folder removes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from dedup_pipeline.lib.runtime.processes import is_alive
from dedup_pipeline.lib.storage.raw_columns import raw_write_options

STORE_SUFFIX = ".store"
SHARD_TABLES = ("manifest", "failures", "hashes", "thumbnails", "embeddings")
# Raw pixels and floats, uncompressed (snappy saves little on them) and memory-mapped when read
# (see raw_columns).
RAW_COLUMNS = {"thumbnails": ["thumbnail"], "embeddings": ["embedding"]}
EVENT_SCHEMA = {
    "path": pl.String,
    "kind": pl.String,  # image, or problem (an input that cannot become an image: no split, broken link)
    "split": pl.String,
    "label": pl.String,
    "file": pl.String,  # where to read it
    "bytes": pl.Int64,
    "mtime_ns": pl.Int64,
    "change": pl.String,  # added, changed, deleted
    "reason": pl.String,  # why a problem is one
}
ADDED, CHANGED, DELETED = "added", "changed", "deleted"
IMAGE, PROBLEM = "image", "problem"
TEMPORARY_PREFIX = ".tmp-"


def drop_key(sequence: int, name: str) -> str:
    """A partition key: the sequence number, then the name with anything but letters, digits, dots,
    dashes and underscores replaced."""
    return f"{sequence:06d}-{re.sub(r'[^A-Za-z0-9._-]+', '_', name).strip('_') or 'drop'}"


@dataclass(frozen=True)
class Drop:
    key: str
    sequence: int

    @property
    def name(self) -> str:
        return self.key.split("-", 1)[1]


def _remove_abandoned(final: Path) -> None:
    """Remove the temporaries of ``final`` that killed writers of this machine left behind (their
    process is gone); those of live writers, and of other machines sharing the store, stay."""
    prefix = f"{TEMPORARY_PREFIX}{final.name}."
    if not final.parent.is_dir():
        return
    for entry in os.scandir(final.parent):
        if not entry.name.startswith(prefix):
            continue
        host, pid, _ = (entry.name[len(prefix) :].rsplit(".", 2) + ["", "", ""])[:3]
        if host == socket.gethostname() and pid.isdigit() and not is_alive(int(pid)):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)


@contextmanager
def _temporary(final: Path) -> Iterator[Path]:
    """A temporary path beside ``final`` (same folder, so a rename is atomic), named after this
    machine and process, removed if the block fails before the caller moved it. Temporaries of
    ``final`` that killed writers left are removed first."""
    _remove_abandoned(final)
    temporary = final.with_name(
        f"{TEMPORARY_PREFIX}{final.name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    )
    try:
        yield temporary
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists():
            temporary.unlink()


def _flushed(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def write_parquet(table: pl.DataFrame | pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` atomically: under a temporary name, flushed, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _temporary(path) as temporary:
        pq.write_table(table.to_arrow() if isinstance(table, pl.DataFrame) else table, temporary)
        _flushed(temporary)
        os.replace(temporary, path)


class Store:
    """The store folder of one database."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @classmethod
    def beside(cls, database: str | Path) -> Store:
        """The store of a database file: ``results.duckdb`` -> ``results.store/``."""
        database = Path(database)
        return cls(database.with_name(database.stem + STORE_SUFFIX))

    @property
    def lock_file(self) -> Path:
        return self.folder / "write.lock"

    @property
    def _registrations(self) -> Path:
        return self.folder / "drops"

    @property
    def _shards(self) -> Path:
        return self.folder / "shards"

    # settings ------------------------------------------------------------------------------------

    def settings(self) -> dict[str, object] | None:
        path = self.folder / "settings.json"
        return json.loads(path.read_text()) if path.exists() else None

    def fix_settings(self, settings: Mapping[str, object]) -> dict[str, object]:
        """Record the extraction settings if none are recorded yet (the first writer wins);
        return the recorded ones."""
        path = self.folder / "settings.json"
        self.folder.mkdir(parents=True, exist_ok=True)
        with _temporary(path) as temporary:
            temporary.write_text(json.dumps(dict(settings), indent=2, sort_keys=True))
            try:
                os.link(temporary, path)  # fails when another writer was first
            except FileExistsError:
                pass
        return self.settings() or {}

    # drops ---------------------------------------------------------------------------------------

    def drops(self) -> list[Drop]:
        """Every registered drop, in registration order."""
        if not self._registrations.is_dir():
            return []
        keys = sorted(
            entry.name.removesuffix(".parquet")
            for entry in os.scandir(self._registrations)
            if entry.name.endswith(".parquet") and not entry.name.startswith(".")
        )
        return [Drop(key, int(key.split("-", 1)[0])) for key in keys]

    def drop(self, key: str) -> Drop:
        for drop in self.drops():
            if drop.key == key:
                return drop
        raise KeyError(f"no drop {key!r} is registered in {self.folder}")

    def register(self, name: str, events: pl.DataFrame) -> Drop:
        """Register a drop of ``events`` (:data:`EVENT_SCHEMA`) under the next sequence number. Two
        registrations at once get different numbers: a number is reserved by creating its marker
        exclusively (a registration killed after that leaves a gap, nothing else)."""
        self._registrations.mkdir(parents=True, exist_ok=True)
        table = events.select(list(EVENT_SCHEMA)).cast(EVENT_SCHEMA).sort("path", "kind").to_arrow()
        taken = self.drops()
        sequence = taken[-1].sequence if taken else 0
        while True:
            sequence += 1
            try:
                os.close(os.open(self._registrations / f".sequence-{sequence:06d}", os.O_CREAT | os.O_EXCL))
                break
            except FileExistsError:
                continue
        drop = Drop(drop_key(sequence, name), sequence)
        write_parquet(table, self._registrations / f"{drop.key}.parquet")
        return drop

    def events(self, drops: list[Drop] | None = None) -> pl.DataFrame:
        """The registered events of ``drops`` (default: all), with each drop's ``sequence``."""
        frames = [
            pl.read_parquet(self._registrations / f"{drop.key}.parquet").with_columns(
                pl.lit(drop.sequence, dtype=pl.Int64).alias("sequence")
            )
            for drop in (self.drops() if drops is None else drops)
        ]
        if not frames:
            return pl.DataFrame(schema={**EVENT_SCHEMA, "sequence": pl.Int64})
        return pl.concat(frames)

    # shards --------------------------------------------------------------------------------------

    def shard_folder(self, drop: Drop) -> Path:
        return self._shards / drop.key

    def is_extracted(self, drop: Drop) -> bool:
        return self.shard_folder(drop).is_dir()

    def shard_file(self, drop: Drop, table: str) -> Path:
        return self.shard_folder(drop) / f"{table}.parquet"

    def write_shard(self, drop: Drop, tables: Mapping[str, pl.DataFrame | pa.Table]) -> None:
        """Write a drop's extraction outputs (every table of :data:`SHARD_TABLES`) as one folder,
        renamed into place whole. When the drop was extracted meanwhile, that shard stays."""
        missing = set(SHARD_TABLES) - set(tables)
        if missing:
            raise ValueError(f"a shard needs every table; missing {sorted(missing)}")
        final = self.shard_folder(drop)
        final.parent.mkdir(parents=True, exist_ok=True)
        with _temporary(final) as temporary:
            temporary.mkdir()
            for name, table in tables.items():
                path = temporary / f"{name}.parquet"
                arrow = table.to_arrow() if isinstance(table, pl.DataFrame) else table
                options = raw_write_options(arrow, RAW_COLUMNS[name]) if name in RAW_COLUMNS else {}
                pq.write_table(arrow, path, **({"compression": "snappy"} | options))
                _flushed(path)
            try:
                os.rename(temporary, final)
            except OSError:
                if not final.is_dir():
                    raise

    def read_shard_table(self, drops: list[Drop], table: str, columns: list[str] | None = None) -> pl.DataFrame:
        """One shard table of several drops, concatenated."""
        frames = [pl.read_parquet(self.shard_file(drop, table), columns=columns) for drop in drops]
        return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


def discard(database: str | Path) -> None:
    """Remove a database file, its write-ahead log and its store: start again from nothing."""
    database = Path(database)
    for path in (database, database.with_name(database.name + ".wal")):
        path.unlink(missing_ok=True)
    shutil.rmtree(Store.beside(database).folder, ignore_errors=True)
