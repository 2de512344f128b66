import datetime
import os
from pathlib import Path

import polars as pl

from dedup_pipeline.lib.inputs.changes import INITIAL_DROP, changes, listing, pending_drops
from dedup_pipeline.lib.inputs.sources import discover
from dedup_pipeline.lib.storage.store import Store


def write(path: Path, data: bytes = b"x", age_seconds: float = 3600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    stamp = datetime.datetime.now().timestamp() - age_seconds
    os.utime(path, (stamp, stamp))


def register_all(root: Path, store: Store, settle: float | None = None) -> list[tuple[str, dict[str, str]]]:
    found = changes(listing(discover(root)), store.events())
    drops, _ = pending_drops(found, root, first=not store.drops(), settle_seconds=settle)
    registered = []
    for pending in drops:
        store.register(pending.name, pending.events)
        registered.append((pending.name, dict(pending.events.select("path", "change").iter_rows())))
    return registered


def test_changes_find_added_rewritten_and_deleted_files(tmp_path: Path) -> None:
    root, store = tmp_path / "data", Store(tmp_path / "db.store")
    write(root / "train/cat/a.jpg")
    write(root / "train/cat/b.jpg")
    write(root / "loose.txt")  # not in a split folder: a problem, registered too
    assert register_all(root, store) == [
        (INITIAL_DROP, {"loose.txt": "added", "train/cat/a.jpg": "added", "train/cat/b.jpg": "added"})
    ]
    assert register_all(root, store) == []  # nothing new
    write(root / "train/cat/a.jpg", b"rewritten in place")
    (root / "train/cat/b.jpg").unlink()
    write(root / "test/dog/c.jpg")
    ((name, events),) = register_all(root, store)
    assert name.startswith("tree-")
    assert events == {"test/dog/c.jpg": "added", "train/cat/a.jpg": "changed", "train/cat/b.jpg": "deleted"}
    assert [drop.sequence for drop in store.drops()] == [1, 2]
    deleted = store.events().filter(pl.col("change") == "deleted")
    assert deleted["split"].to_list() == ["train"]  # a deletion keeps what was known of the file


def test_drop_folders_are_drops_of_their_own_once_settled(tmp_path: Path) -> None:
    root, store = tmp_path / "data", Store(tmp_path / "db.store")
    write(root / "train/cat/a.jpg")
    register_all(root, store)
    write(root / "drops/2026-11-29/test/cat/new.jpg", age_seconds=0)  # still being copied
    write(root / "train/cat/fresh.jpg", age_seconds=0)
    assert register_all(root, store, settle=60) == []
    write(root / "drops/2026-11-29/_SUCCESS", b"")  # the marker: complete now
    ((name, events),) = register_all(root, store, settle=60)
    assert name == "2026-11-29" and events == {"drops/2026-11-29/test/cat/new.jpg": "added"}
    assert store.drops()[-1].key == "000002-2026-11-29"
    found = discover(root).images
    assert {(image.path, image.split, image.label) for image in found} >= {
        ("drops/2026-11-29/test/cat/new.jpg", "test", "cat")
    }
    ((name, events),) = register_all(root, store)  # a command run takes the unsettled file at once
    assert events == {"train/cat/fresh.jpg": "added"}
