"""The HTML report and the nearest-neighbour sample at scale: a report of 10,000 leaked pairs, the
clusters of a million-image dataset (5% of its images in clusters within a split) and the other
pages, written from synthetic tables (what it costs to write, how big it is, how long chromium
takes to show and filter it); and the neighbour sample's cost against 100,000 and 1,000,000 images."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

REPORT_CASES = ((10_000, 50_000),)  # (leaked pairs, images in clusters within a split)
LABELS = tuple(f"class-{index}" for index in range(10))
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom")


def _pair_rows(count: int, first_id: int, rng: np.random.Generator, splits: tuple[str, str]) -> pl.DataFrame:
    ids_a = np.arange(first_id, first_id + count, dtype=np.int64)
    ids_b = ids_a + count
    probability = rng.uniform(0.5, 1.0, count).astype(np.float32)
    return pl.DataFrame(
        {
            "image_id_a": ids_a,
            "image_id_b": ids_b,
            "path_a": [f"{splits[0]}/{LABELS[k % 10]}/image-{k:07d}.jpg" for k in ids_a],
            "split_a": splits[0],
            "label_a": [LABELS[k % 10] for k in ids_a],
            "path_b": [f"{splits[1]}/{LABELS[k % 10]}/image-{k:07d}.jpg" for k in ids_b],
            "split_b": splits[1],
            "label_b": [LABELS[(k + (k % 7 == 0)) % 10] for k in ids_a],
            "hamming": rng.integers(0, 12, count),
            "cosine": rng.uniform(0.85, 1.0, count).astype(np.float32),
            "verification_score": probability,
            "copy_probability": probability,
            "evidence": rng.choice(["pixels,phash,dhash,verified", "phash,embedding,verified", "verified"], count),
        }
    )


def synthetic_tables(leaks: int, clustered: int, seed: int = 0):
    """Report tables with ``leaks`` leaked pairs and ``clustered`` images in within-split clusters."""
    from dedup_pipeline.lib.reporting.histograms import histograms_of
    from dedup_pipeline.lib.reporting.report_tables import MARK_COLUMNS, ReportTables

    rng = np.random.default_rng(seed)
    leak_rows = _pair_rows(leaks, 0, rng, ("test", "train"))
    conflicts = leak_rows.filter(pl.col("label_a") != pl.col("label_b")).with_columns(
        pl.int_range(pl.len()).alias("cluster_id")
    )
    cluster_ids = np.arange(clustered) // 3
    first = 2 * leaks + 10_000_000
    clusters = pl.DataFrame(
        {
            "cluster_id": cluster_ids,
            "image_id": np.arange(first, first + clustered, dtype=np.int64),
            "path": [f"train/{LABELS[k % 10]}/photo-{k:07d}.jpg" for k in range(clustered)],
            "split": "train",
            "label": [LABELS[k % 10] for k in range(clustered)],
            "is_representative": np.arange(clustered) % 3 == 0,
            "linked_to": [
                None if k % 3 == 0 else f"train/{LABELS[(k - k % 3) % 10]}/photo-{k - k % 3:07d}.jpg"
                for k in range(clustered)
            ],
            "cluster_size": np.full(clustered, 3),
            "link_hamming": rng.integers(0, 10, clustered),
            "link_cosine": rng.uniform(0.85, 1.0, clustered).astype(np.float32),
        }
    )
    sample = pl.DataFrame(
        {
            "hamming_phash": rng.integers(0, 30, 1_000),
            "cosine": rng.uniform(0.3, 1.0, 1_000),
            "verifier_score": rng.uniform(0, 1, 1_000),
        }
    )
    tables = ReportTables(
        counts=[("images", 1_000_000), ("leaked pairs (across splits)", leaks)],
        leak_report=pl.DataFrame({"eval_split": ["test"], "reference_split": ["train"], "leaked_images": [leaks]}),
        thresholds=pl.DataFrame({"evidence": ["phash"], "threshold": [8.0]}),
        verifier=None,
        errors_by_reason=pl.DataFrame({"reason": [], "inputs": []}, schema={"reason": pl.String, "inputs": pl.Int64}),
        leaks=leak_rows,
        conflicts=conflicts,
        clusters=clusters,
        latest_drop="000002-drop",
        latest_pairs=leak_rows.head(1_000),
        marks=pl.DataFrame(schema=MARK_COLUMNS),
        neighbour_plots=histograms_of(sample, {"hamming_phash": 8, "cosine": 0.9, "verifier_score": 0.5}),
    )
    return tables


def thumbnails_of(image_ids: set[int], seed: int = 0) -> dict[int, bytes]:
    """A 32 x 32 picture per image: smooth gradients with noise, about as compressible as photos."""
    from dedup_pipeline.lib.features.thumbnails import THUMBNAIL_SIDE

    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, THUMBNAIL_SIDE, dtype=np.float32)
    base = (ramp[:, None, None] + ramp[None, :, None] * np.array([0.3, 0.6, 0.9], dtype=np.float32)) / 2
    pictures = {}
    for image_id in image_ids:
        noise = rng.normal(0, 12, base.shape).astype(np.float32)
        pictures[image_id] = np.clip(base + noise + (image_id % 50), 0, 255).astype(np.uint8).tobytes()
    return pictures


def _folder_size(folder: Path) -> tuple[int, float, float]:
    files = [path for path in folder.rglob("*") if path.is_file()]
    sizes = [path.stat().st_size for path in files]
    return len(files), sum(sizes) / 2**20, max(sizes) / 2**20


def report_case(leaks: int, clustered: int) -> dict[str, float]:
    """Write the report of synthetic tables; its size; chromium's time to show and filter the
    leaks page and the clusters page (NaN without chromium)."""
    from dedup_pipeline.lib.reporting.html_report import write_report

    tables = synthetic_tables(leaks, clustered)
    thumbnails = thumbnails_of(tables.image_ids())
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        index = write_report(tables, thumbnails, Path(work) / "report", "synthetic")
        seconds = time.perf_counter() - start
        files, total_mb, largest_mb = _folder_size(index.parent)
        shown = {
            f"{page}_render_seconds": _render_seconds(index.parent / f"{page}.html", fragment)
            for page, fragment in (("leaks", "label=class-3"), ("clusters", "label=class-3"))
        }
        pages_mb = {
            f"{page}_data_mb": (index.parent / "data" / f"{page}.js").stat().st_size / 2**20
            for page in ("leaks", "clusters")
        }
    return {
        "seconds": seconds,
        "thumbnails": len(thumbnails),
        "files": files,
        "folder_mb": total_mb,
        "largest_file_mb": largest_mb,
        **pages_mb,
        **shown,
    }


def _render_seconds(page: Path, fragment: str) -> float:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        return float("nan")
    start = time.perf_counter()
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"{page.as_uri()}#{fragment}"], capture_output=True, text=True, timeout=300
    ).stdout
    seconds = time.perf_counter() - start
    if 'data-rows-shown="100"' not in dom:  # a filtered page of 100 rows: the page worked
        raise RuntimeError(f"{page.name} did not render its rows")
    return seconds


def neighbour_sample_case(count: int) -> dict[str, float]:
    """The nearest-neighbour sample (1,000 images: by a 64-bit hash and by 1280-d embeddings)
    against ``count`` images."""
    from dedup_pipeline.benchmarks.cases import planted_embeddings, planted_hashes
    from dedup_pipeline.lib.search.nearest_neighbours import nearest_by_cosine, nearest_by_hamming, sample_positions

    hashes = planted_hashes(count)
    vectors, _ = planted_embeddings(count)
    queries = sample_positions(np.random.default_rng(0).permutation(count))
    start = time.perf_counter()
    nearest_by_hamming(hashes, None, queries)
    hamming_seconds = time.perf_counter() - start
    nearest_by_cosine(vectors, queries)
    return {"seconds": time.perf_counter() - start, "hamming_seconds": hamming_seconds}
