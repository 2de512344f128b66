"""Incremental runs on CIFAR-10, each ``dedup-pipeline`` command timed as a user runs it (a new
process, start-up included): a drop of 600 images against 59,400 stored, ten drops of 1% in a
row, and ``check`` against the store; and whether the drop's results equal a from-scratch run on
all 60,000 images with the same thresholds (``--thresholds-from``)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
from PIL import Image

from dedup_pipeline.lib.calibration.transforms import transform_named
from dedup_pipeline.lib.storage.store import discard
from dedup_pipeline.stress.commands import dedup_command
from dedup_pipeline.stress.tables import compare, read_tables

# what "equal" compares: every duplicate pair with its distances and evidence, the dedup manifest
COMPARED = {
    "duplicate_pairs": "SELECT * FROM duplicate_pairs",
    "dedup_manifest": "SELECT * FROM dedup_manifest",
    "duplicate_clusters": "SELECT * EXCLUDE (image_id, representative_id, linked_to_id) FROM duplicate_clusters",
}
CHECK_IMAGES = 1_000


def timed_command(*arguments: str) -> float:
    """Wall seconds of one ``dedup-pipeline`` command in a new process (exit 0 or 1: checks may fail)."""
    start = time.perf_counter()
    finished = subprocess.run([*dedup_command(), *arguments], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if finished.returncode not in (0, 1):
        raise RuntimeError(f"dedup-pipeline {' '.join(arguments)} failed:\n{finished.stderr[-3000:]}")
    return seconds


def held_out_tree(cifar: Path, target: Path, held: Callable[[int], bool]) -> list[Path]:
    """``target``: CIFAR-10 as symbolic links, without the files whose index in path order is
    ``held``; returns those (relative paths), to be added as drops."""
    files = sorted(path.relative_to(cifar) for path in cifar.rglob("*.jpg"))
    if target.exists():
        for link in target.rglob("*.jpg"):
            link.unlink()
    kept = [path for index, path in enumerate(files) if not held(index)]
    link_files(cifar, target, kept)
    return [path for index, path in enumerate(files) if held(index)]


def link_files(cifar: Path, target: Path, files: list[Path]) -> None:
    for relative in files:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        (target / relative).symlink_to((cifar / relative).resolve())


def same_results(database: Path, other: Path) -> dict[str, int]:
    """Per compared table, how many rows differ (in one database and not the other, both ways)."""
    differences = compare(read_tables(database, COMPARED), read_tables(other, COMPARED))
    return {name: difference.lost + difference.extra for name, difference in differences.items()}


def run_arguments(data: Path, database: Path, *more: str) -> list[str]:
    return ["run", "--data", str(data), "--db", str(database), *more]


def checked_images(cifar: Path, stored: list[Path], target: Path, count: int) -> list[Path]:
    """``count`` JPEG re-encodes (quality 50) of stored images: what a labelling tool might export."""
    target.mkdir(parents=True, exist_ok=True)
    step = max(1, len(stored) // count)
    made = []
    for index, relative in enumerate(stored[::step][:count]):
        path = target / f"{index:04d}.jpg"
        with Image.open(cifar / relative) as image:
            transform_named("jpeg q50").apply(image.convert("RGB")).save(path)
        made.append(path)
    return made


def drop_case(cifar: Path, work: Path) -> dict[str, object]:
    """59,400 images, then a drop of the other 600 (every 100th file by sorted path), then the
    same data from scratch with the drop's thresholds; ``check`` of 1 and of 1,000 images."""
    data, database, scratch = work / "data", work / "incremental.duckdb", work / "scratch.duckdb"
    held = held_out_tree(cifar, data, lambda index: index % 100 == 0)
    discard(database)
    full = timed_command(*run_arguments(data, database))
    link_files(cifar, data, held)
    drop = timed_command(*run_arguments(data, database))
    discard(scratch)
    from_scratch = timed_command(*run_arguments(data, scratch, "--thresholds-from", str(database)))
    differing = same_results(database, scratch)
    stored = sorted(path.relative_to(data) for path in data.rglob("*.jpg"))
    queries = checked_images(cifar, stored, work / "checked", CHECK_IMAGES)
    one = timed_command("check", str(queries[0]), "--db", str(database))
    many = timed_command("check", *map(str, queries), "--db", str(database))
    with duckdb.connect(str(database), read_only=True) as connection:
        pairs = connection.execute("SELECT count(*) FROM duplicate_pairs").fetchone()[0]
    return {
        "full_seconds": full,
        "drop_seconds": drop,
        "drop_share": drop / full,
        "scratch_seconds": from_scratch,
        "differing_rows": differing,
        "pairs": pairs,
        "check_one_seconds": one,
        "check_many_seconds": many,
        "check_many_images": len(queries),
        "check_images_per_second": (len(queries) - 1) / max(many - one, 1e-9),
    }


def drops_case(cifar: Path, work: Path, drops: int = 10) -> dict[str, object]:
    """54,000 images, then ten drops of 600 (1% of CIFAR-10) in a row."""
    data, database = work / "data", work / "drops.duckdb"
    held = held_out_tree(cifar, data, lambda index: index % 10 == 0)
    groups = [held[group::drops] for group in range(drops)]
    discard(database)
    full = timed_command(*run_arguments(data, database))
    seconds = []
    for group in groups:
        link_files(cifar, data, group)
        seconds.append(timed_command(*run_arguments(data, database)))
    return {
        "full_seconds": full,
        "drop_images": [len(group) for group in groups],
        "drop_seconds": seconds,
        "last_over_first": seconds[-1] / seconds[0],
    }


def summary_rows(drop: dict, drops: dict) -> list[tuple[str, object]]:
    differing = sum(drop["differing_rows"].values())
    return [
        ("full run, 59,400 images (process wall)", f"{drop['full_seconds']:.1f} s"),
        (
            "drop of 600 images (process wall)",
            f"{drop['drop_seconds']:.1f} s = {drop['drop_share']:.1%} of the full run",
        ),
        (
            "from scratch on 60,000 with the drop's thresholds",
            f"{drop['scratch_seconds']:.1f} s; rows differing from the incremental result: {differing} "
            f"({', '.join(f'{k} {v}' for k, v in drop['differing_rows'].items())}; {drop['pairs']:,} pairs)",
        ),
        (
            "ten drops of 600 after 54,000 (seconds each)",
            ", ".join(f"{s:.1f}" for s in drops["drop_seconds"]) + f"; tenth / first {drops['last_over_first']:.2f}",
        ),
        ("check of 1 image against 60,000 (process wall)", f"{drop['check_one_seconds']:.2f} s"),
        (
            f"check of {drop['check_many_images']:,} images in one call",
            f"{drop['check_many_seconds']:.1f} s: {drop['check_images_per_second']:.0f} images/s after start-up",
        ),
    ]
