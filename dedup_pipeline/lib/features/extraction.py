"""Extraction of a whole dataset: its images' per-image work (:mod:`image_work`) spread over worker
processes in chunks, and the results gathered into the manifest, failures, hashes, thumbnails and
embeddings, in input order.

The unit of work is a list of :class:`ImageSource`, so a shard or a data drop is just a smaller
list: nothing here depends on the rest of the dataset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import polars as pl
from PIL import Image

from dedup_pipeline.lib.features.hashing import words_per_hash
from dedup_pipeline.lib.features.image_work import (
    ExtractedChunk,
    ExtractionSettings,
    ImageFacts,
    ImageFailure,
    embedder_for,
    extract_chunk,
)
from dedup_pipeline.lib.features.thumbnails import THUMBNAIL_SIDE
from dedup_pipeline.lib.features.views import VIEWS
from dedup_pipeline.lib.inputs.sources import ImageSource, local_path
from dedup_pipeline.lib.runtime.parallel import WorkerCrash, available_cores, map_chunks

ProgressCallback = Callable[[int, int], None]
CHUNK_SIZE = 128  # images per worker task: enough to amortise batched hashing and the hand-over
# Fewer images are extracted in this process: starting workers and handing chunks over costs more
# than it saves on a small drop. 600 CIFAR images: 0.86-1.10 s here against 1.31-1.34 s with 2
# workers (with the model in ONNX Runtime; when workers imported torch, 1.4 s against 3.0 s). The
# bound itself was chosen when a worker took 2.5 s to start and has not been measured again.
IN_PROCESS_BELOW = 3_000


@dataclass
class ExtractionResult:
    """Decodable images (``manifest``, row i is image i) and the rest (``failures``)."""

    manifest: pl.DataFrame
    failures: pl.DataFrame
    hashes: dict[str, np.ndarray]  # algorithm (or its mirror_key) -> (n_images, words) uint64
    thumbnails: np.ndarray  # (n_images, side, side, 3) uint8
    view_hashes: np.ndarray | None  # (n_images, 2 + len(VIEWS)) uint64; None when not asked for
    embeddings: np.ndarray | None  # (n_images, dimension) float32, unit rows


def _extract_chunks(
    sources: Sequence[ImageSource], settings: ExtractionSettings, workers: int
) -> Iterator[tuple[range, ExtractedChunk | WorkerCrash]]:
    work = partial(extract_chunk, settings=settings)
    files = [source.file for source in sources]
    if workers <= 1:
        for start in range(0, len(files), CHUNK_SIZE):
            span = range(start, min(start + CHUNK_SIZE, len(files)))
            yield span, work(files[span.start : span.stop])
        return
    chunk_size = max(1, min(CHUNK_SIZE, len(files) // (workers * 8)))
    yield from map_chunks(work, files, workers, chunk_size)


def extract(
    sources: Sequence[ImageSource],
    settings: ExtractionSettings,
    workers: int,
    progress: ProgressCallback | None = None,
) -> ExtractionResult:
    """Extract every source, in ``workers`` processes (in this one when ``workers`` <= 1)."""
    manifest_rows: list[dict[str, object]] = []
    failure_rows: list[dict[str, object]] = []
    hash_parts: dict[str, list[np.ndarray]] = {name: [] for name in settings.hash_names()}
    thumbnails: list[np.ndarray] = []
    view_hashes: list[np.ndarray] = []
    embeddings: list[np.ndarray] = []
    workers = workers if len(sources) >= IN_PROCESS_BELOW else 1
    if workers > 1:
        settings = replace(settings, embedding_threads=max(1, available_cores() // workers))
        if settings.embeds:  # a model that is exported on first use is exported once, here
            embedder_for(settings.embedding_model, settings.embedding_size, settings.embedding_threads)

    for span, chunk in _extract_chunks(sources, settings, workers):
        chunk_sources = sources[span.start : span.stop]
        if isinstance(chunk, WorkerCrash):
            failure_rows.extend(_failure_row(source, chunk.reason) for source in chunk_sources)
        else:
            for source, outcome in zip(chunk_sources, chunk.outcomes, strict=True):
                if isinstance(outcome, ImageFailure):
                    failure_rows.append(_failure_row(source, outcome.reason))
                else:
                    manifest_rows.append(_manifest_row(len(manifest_rows), source, outcome))
            for name, words in chunk.hashes.items():
                hash_parts[name].append(words)
            thumbnails.append(chunk.thumbnails)
            if chunk.view_hashes is not None:
                view_hashes.append(chunk.view_hashes)
            if chunk.embeddings is not None:
                embeddings.append(chunk.embeddings)
        if progress is not None:
            progress(span.stop, len(sources))

    word_count = words_per_hash(settings.hash_size)
    return ExtractionResult(
        manifest=pl.DataFrame(manifest_rows, schema=MANIFEST_SCHEMA),
        failures=pl.DataFrame(failure_rows, schema=FAILURE_SCHEMA),
        hashes={
            name: np.concatenate(parts) if parts else np.zeros((0, word_count), dtype=np.uint64)
            for name, parts in hash_parts.items()
        },
        thumbnails=np.concatenate(thumbnails)
        if thumbnails
        else np.zeros((0, THUMBNAIL_SIDE, THUMBNAIL_SIDE, 3), dtype=np.uint8),
        view_hashes=_stacked_view_hashes(view_hashes, settings),
        embeddings=_stacked_embeddings(embeddings, settings, len(manifest_rows)),
    )


def _stacked_view_hashes(parts: list[np.ndarray], settings: ExtractionSettings) -> np.ndarray | None:
    if not settings.view_hashes:
        return None
    return np.concatenate(parts) if parts else np.zeros((0, 2 + len(VIEWS)), dtype=np.uint64)


def _stacked_embeddings(parts: list[np.ndarray], settings: ExtractionSettings, count: int) -> np.ndarray | None:
    if not settings.embeds:
        return None
    if parts:
        return np.concatenate(parts)
    # no chunk came back decoded: the dimension comes from the model itself
    dimension = embedder_for(settings.embedding_model, settings.embedding_size, None).dimension
    return np.zeros((count, dimension), dtype=np.float32)


def _failure_row(source: ImageSource, reason: str) -> dict[str, object]:
    return {"path": source.path, "split": source.split, "label": source.label, "reason": reason}


def _manifest_row(image_id: int, source: ImageSource, features: ImageFacts) -> dict[str, object]:
    return {
        "image_id": image_id,
        "path": source.path,
        "split": source.split,
        "label": source.label,
        "bytes": features.bytes,
        "width": features.width,
        "height": features.height,
        "format": features.format,
        "mode": features.mode,
        "frames": features.frames,
        "content_sha256": features.content_sha256,
        "pixel_sha256": features.pixel_sha256,
        "notes": features.notes,
    }


MANIFEST_SCHEMA = {
    "image_id": pl.Int64,
    "path": pl.String,
    "split": pl.String,
    "label": pl.String,
    "bytes": pl.Int64,
    "width": pl.Int32,
    "height": pl.Int32,
    "format": pl.String,
    "mode": pl.String,
    "frames": pl.Int32,
    "content_sha256": pl.String,
    "pixel_sha256": pl.String,
    "notes": pl.String,
}
FAILURE_SCHEMA = {"path": pl.String, "split": pl.String, "label": pl.String, "reason": pl.String}


def choose_embedding_size(sources: Sequence[ImageSource], default: int, sample: int = 500) -> int:
    """Model input side for a dataset: the median shorter side of a sample of its images (read
    from headers only), rounded up to a multiple of 32 and kept within [64, ``default``].
    Small images gain nothing from being upsampled to the model's native size, which costs ~10x."""
    step = max(1, len(sources) // sample)
    sides = []
    for source in sources[::step]:
        try:
            with Image.open(local_path(str(source.file))) as image:
                sides.append(min(image.size))
        except Exception:  # unreadable files are reported by extraction itself
            continue
    if not sides:
        return default
    median = int(np.median(sides))
    return int(min(default, max(64, -(-median // 32) * 32)))
