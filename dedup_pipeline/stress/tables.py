"""What a store holds, as a reader sees it: the contract tables compared row for row with a
reference, and the store's integrity right after a kill."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from dedup_pipeline.lib.storage.database import table_names
from dedup_pipeline.lib.storage.store import SHARD_TABLES, TEMPORARY_PREFIX, Store
from dedup_pipeline.lib.storage.write_lock import connect

# every row a user reads; ids that depend on drop numbering are left out (a killed registration
# leaves a gap in the sequence, which changes no result)
COMPARED = {
    "image_manifest": "SELECT image_id, path, split, label, content_sha256, pixel_sha256, notes FROM image_manifest",
    "image_errors": "SELECT * FROM image_errors",
    "duplicate_pairs": "SELECT * FROM duplicate_pairs",
    "duplicate_clusters": "SELECT * EXCLUDE (image_id, representative_id, linked_to_id) FROM duplicate_clusters",
    "label_conflicts": "SELECT * FROM label_conflicts",
    "leak_report": "SELECT * FROM leak_report",
    "dedup_manifest": "SELECT * FROM dedup_manifest",
}


@dataclass(frozen=True)
class TableDifference:
    reference_rows: int
    rows: int
    lost: int  # reference rows not found
    extra: int  # rows the reference does not have
    repeated: int  # rows present more than once (beyond the reference's own repeats)


def read_tables(database: Path, queries: Mapping[str, str] = COMPARED) -> dict[str, pl.DataFrame]:
    """Each query's rows (by default every table a user reads)."""
    with closing(connect(database, read_only=True)) as connection:
        return {name: connection.execute(query).pl() for name, query in queries.items()}


def compare(reference: dict[str, pl.DataFrame], found: dict[str, pl.DataFrame]) -> dict[str, TableDifference]:
    differences = {}
    for name, expected in reference.items():
        actual = found[name]
        columns = expected.columns
        differences[name] = TableDifference(
            reference_rows=expected.height,
            rows=actual.height,
            lost=expected.join(actual, on=columns, how="anti", nulls_equal=True).height,
            extra=actual.join(expected, on=columns, how="anti", nulls_equal=True).height,
            repeated=max(0, (actual.height - actual.unique().height) - (expected.height - expected.unique().height)),
        )
    return differences


@dataclass(frozen=True)
class Integrity:
    """A store as a reader finds it right after a writer was killed."""

    database_opens: bool
    error: str | None
    repeated_images: int  # image_manifest rows beyond one per path
    drops: int
    shards: int
    incomplete_shards: int  # shard folders in place without every table readable
    temporaries: int  # files and folders a killed writer left under a temporary name


def integrity(database: Path) -> Integrity:
    store = Store.beside(database)
    shard_folders = sorted((store.folder / "shards").glob("[!.]*")) if (store.folder / "shards").is_dir() else []
    incomplete = sum(1 for folder in shard_folders if not _complete(folder))
    names = [name for _, folders, files in os.walk(store.folder) for name in folders + files]
    base = {
        "drops": len(store.drops()),
        "shards": len(shard_folders),
        "incomplete_shards": incomplete,
        "temporaries": sum(name.startswith(TEMPORARY_PREFIX) for name in names),
    }
    if not database.exists():
        return Integrity(True, None, 0, **base)
    try:
        with closing(connect(database, read_only=True, wait_seconds=30)) as connection:
            present = table_names(connection)
            repeated = 0
            if "image_manifest" in present:
                query = "SELECT count(*) - count(DISTINCT path) FROM image_manifest"
                repeated = connection.execute(query).fetchone()[0]
            for name, query in COMPARED.items():  # every table a reader would read is there whole
                if name in present:
                    connection.execute(f"SELECT count(*) FROM ({query})").fetchone()
    except Exception as error:  # a reader's failure is what this records
        return Integrity(False, f"{type(error).__name__}: {error}"[:200], 0, **base)
    return Integrity(True, None, repeated, **base)


def _complete(folder: Path) -> bool:
    try:
        for table in SHARD_TABLES:
            pq.read_metadata(folder / f"{table}.parquet")
    except Exception:
        return False
    return True
