"""What changed in a dataset since the drops registered so far, as new drops to register.

A listing is every input the dataset has now (images and problems, with each file's size and
modification time). Against the latest registered event of each input it gives the changes: an
input that is new (``added``), whose file, split, label or problem changed (``changed``: a file
rewritten in place has another size or modification time), or that is gone (``deleted``).

Changes are grouped into drops: each ``drops/<drop>/`` folder's changes are one drop named after
it; everything else (the tree that grows in place, or a manifest's rows) is one drop named
``initial`` the first time and ``tree-<UTC time>`` after. A sensor only takes what has settled
(``settle_seconds``): a drop folder once it holds its ``_SUCCESS`` marker or nothing in it was
modified for that long, any other file once it was not modified for that long; deletions at once.
A command run takes everything at once.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from dedup_pipeline.lib.inputs.sources import (
    DROPS_FOLDER,
    READY_MARKER,
    DatasetSources,
    discover,
    drop_folder,
    local_path,
)
from dedup_pipeline.lib.storage.store import ADDED, CHANGED, DELETED, EVENT_SCHEMA, IMAGE, PROBLEM, Drop, Store

COMPARED = ("split", "label", "file", "bytes", "mtime_ns", "reason")
INITIAL_DROP = "initial"


def listing(sources: DatasetSources) -> pl.DataFrame:
    """Every input of a dataset now: one row per image and per problem (:data:`EVENT_SCHEMA`
    without ``change``), with the file's size and modification time (null when it cannot be
    read: extraction will record why)."""
    rows = []
    for image in sources.images:
        size, modified = image.bytes, image.mtime_ns
        if size is None:  # a manifest's rows: look at their files now
            try:
                stat = os.stat(local_path(image.file))
                size, modified = stat.st_size, stat.st_mtime_ns
            except OSError:
                pass
        rows.append((image.path, IMAGE, image.split, image.label, image.file, size, modified, None))
    for problem in sources.problems:
        rows.append((problem.path, PROBLEM, problem.split, problem.label, None, None, None, problem.reason))
    schema = {name: dtype for name, dtype in EVENT_SCHEMA.items() if name != "change"}
    return pl.DataFrame(rows, schema=schema, orient="row")


def latest(events: pl.DataFrame) -> pl.DataFrame:
    """Each input's latest registered event (events carry their drop's ``sequence``)."""
    return events.sort("sequence").group_by("path", "kind", maintain_order=True).last()


def changes(current: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """The events that bring the registered state (``events`` of every registered drop) to the
    ``current`` listing, sorted by path."""
    known = latest(events).filter(pl.col("change") != DELETED).select("path", "kind", *COMPARED)
    joined = current.join(known, on=["path", "kind"], how="full", suffix="_known", coalesce=True)
    was_known = pl.col("file_known").is_not_null() | pl.col("reason_known").is_not_null()
    differs = pl.any_horizontal(pl.col(name).ne_missing(pl.col(f"{name}_known")) for name in COMPARED)
    in_current = current.select("path", "kind").with_columns(pl.lit(True).alias("_listed"))
    joined = joined.join(in_current, on=["path", "kind"], how="left")
    listed = pl.col("_listed").fill_null(False)
    change = (
        pl.when(listed & ~was_known)
        .then(pl.lit(ADDED))
        .when(listed & differs)
        .then(pl.lit(CHANGED))
        .when(~listed)
        .then(pl.lit(DELETED))
        .otherwise(None)
    )
    found = joined.with_columns(change.alias("change")).filter(pl.col("change").is_not_null())
    deleted = pl.col("change") == DELETED
    # a deletion records what was known of the input; the rest what is there now
    found = found.with_columns(
        [pl.when(deleted).then(pl.col(f"{name}_known")).otherwise(pl.col(name)).alias(name) for name in COMPARED]
    )
    return found.select(list(EVENT_SCHEMA)).sort("path", "kind")


@dataclass(frozen=True)
class PendingDrop:
    """A drop to register: its name and events."""

    name: str
    events: pl.DataFrame


def _settled(events: pl.DataFrame, root: Path, folder: str | None, cutoff_ns: int | None) -> pl.DataFrame:
    """The events of a group that may be registered now."""
    if cutoff_ns is None:
        return events
    if folder is not None:
        if (root / DROPS_FOLDER / folder / READY_MARKER).exists():
            return events
        newest = events["mtime_ns"].max()
        return events if newest is None or newest <= cutoff_ns else events.clear()
    quiet = (pl.col("change") == DELETED) | pl.col("mtime_ns").is_null() | (pl.col("mtime_ns") <= cutoff_ns)
    return events.filter(quiet)


def pending_drops(
    found: pl.DataFrame,
    root: Path,
    first: bool,
    settle_seconds: float | None = None,
    now: datetime.datetime | None = None,
) -> tuple[list[PendingDrop], int]:
    """Group ``found`` changes into drops to register (see the module docstring), and count the
    changes left for later because they have not settled. ``first``: nothing is registered yet."""
    now = now or datetime.datetime.now(datetime.UTC)
    cutoff_ns = None if settle_seconds is None else int((now.timestamp() - settle_seconds) * 1e9)
    grouped = found.with_columns(
        pl.col("path").map_elements(drop_folder, return_dtype=pl.String).alias("_drop")
    ).partition_by("_drop", maintain_order=True, include_key=False, as_dict=True)
    drops, deferred = [], 0
    for (folder,), events in sorted(grouped.items(), key=lambda item: (item[0][0] is not None, item[0][0] or "")):
        ready = _settled(events, root, folder, cutoff_ns)
        deferred += events.height - ready.height
        if ready.height:
            tree_name = INITIAL_DROP if first else f"tree-{now:%Y%m%dT%H%M%SZ}"
            drops.append(PendingDrop(folder or tree_name, ready))
    return drops, deferred


@dataclass(frozen=True)
class Registration:
    """What one look at the dataset registered."""

    root: Path
    listed: int  # inputs the dataset has now
    drops: list[Drop]  # registered by this call
    deferred: int  # changes left for later: not settled yet


def register_changes(
    data: str | Path, store: Store, settle_seconds: float | None = None, allowed_roots: Sequence[str] = ()
) -> Registration:
    """List the dataset, compare it with what ``store`` has registered and register the changes as
    drops (only what has settled, when ``settle_seconds`` is given). ``allowed_roots``: where a
    manifest's rows may point besides its own folder."""
    sources = discover(data, allowed_roots)
    current = listing(sources)
    found = changes(current, store.events())
    pending, deferred = pending_drops(found, sources.root, first=not store.drops(), settle_seconds=settle_seconds)
    return Registration(sources.root, current.height, [store.register(p.name, p.events) for p in pending], deferred)
