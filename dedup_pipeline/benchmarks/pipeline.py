"""The whole pipeline on CIFAR-10 subsets: wall time, and each asset's own timings and peak memory."""

from __future__ import annotations

import time
from pathlib import Path

SUBSET_MARKER = ".complete"


def cifar_subset(cifar: Path, target: Path, count: int) -> Path:
    """A folder of ``count`` CIFAR images (the same share of every split and class, first files by
    name), as symlinks; the full set is ``cifar`` itself."""
    files = sorted(path for path in cifar.rglob("*.jpg"))
    if count >= len(files):
        return cifar
    if (target / SUBSET_MARKER).exists():
        return target
    by_folder: dict[Path, list[Path]] = {}
    for path in files:
        by_folder.setdefault(path.parent, []).append(path)
    share = count / len(files)
    for folder, members in by_folder.items():
        destination = target / folder.relative_to(cifar)
        destination.mkdir(parents=True, exist_ok=True)
        for path in members[: round(len(members) * share)]:
            (destination / path.name).symlink_to(path.resolve())
    (target / SUBSET_MARKER).touch()
    return target


def pipeline_run(data: Path, database: Path) -> dict[str, object]:
    """Materialize every asset (default configuration) as ``dedup-pipeline run`` does."""
    from dedup_pipeline.cli import materialize
    from dedup_pipeline.defs.resources import DedupConfig
    from dedup_pipeline.lib.storage.store import discard

    discard(database)
    start = time.perf_counter()
    run = materialize(DedupConfig(data=str(data)), database)
    seconds = time.perf_counter() - start
    if not run.success:
        raise RuntimeError(f"pipeline failed on {data}")
    stages: dict[str, dict[str, float]] = {}
    for event in (event for result in run.results for event in result.get_asset_materialization_events()):
        metadata = event.materialization.metadata
        measured = {
            key: float(entry.value)
            for key, entry in metadata.items()
            if key.endswith("seconds") or key.endswith("peak_rss_mb")
        }
        if measured:
            stages[event.asset_key.to_user_string()] = measured
    return {"seconds": seconds, "stages": stages}
