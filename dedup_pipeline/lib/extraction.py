"""Per-image work: read the file once, decode it once, and derive everything from that decode.

Each image yields its manifest facts, its content and pixel digests, its perceptual hashes, its
thumbnail and, when an embedder is configured, its embedding input (resized once, in the worker
that decoded it). Workers are separate processes; embeddings are computed in the parent in
batches as results stream in, so memory stays bounded by one batch of model inputs.

The unit of work is a list of :class:`ImageSource`, so a shard or a data drop is just a smaller
list: nothing here depends on the rest of the dataset.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from PIL import Image

from dedup_pipeline.lib.decoding import DecodeError, decode_image
from dedup_pipeline.lib.hashing import content_digest, mirror_key, perceptual_hashes, pixel_digest, words_per_hash
from dedup_pipeline.lib.parallel import WorkerCrash, ordered_map
from dedup_pipeline.lib.sources import ImageSource
from dedup_pipeline.lib.thumbnails import THUMBNAIL_SIDE, thumbnail

if TYPE_CHECKING:  # workers import this module: keep torch out of them
    from dedup_pipeline.lib.embedding import Embedder

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class ExtractionSettings:
    hash_size: int
    hash_algorithms: tuple[str, ...]
    embedding_size: int | None
    max_pixels: int
    mirrored_algorithms: tuple[str, ...] = ()  # also hashed on the mirrored picture


@dataclass
class ImageFeatures:
    bytes: int
    width: int
    height: int
    format: str | None
    mode: str
    frames: int
    content_sha256: str
    pixel_sha256: str
    notes: str | None
    hashes: dict[str, tuple[int, ...]]
    thumbnail: np.ndarray
    embedding_input: np.ndarray | None


@dataclass
class ImageFailure:
    reason: str


@dataclass
class ExtractionResult:
    """Decodable images (``manifest``, row i is image i) and the rest (``failures``)."""

    manifest: pl.DataFrame
    failures: pl.DataFrame
    hashes: dict[str, np.ndarray]  # algorithm (or its mirror_key) -> (n_images, words) uint64
    thumbnails: np.ndarray  # (n_images, side, side, 3) uint8
    embeddings: np.ndarray | None  # (n_images, dimension) float32, unit rows


def extract_image(source: ImageSource, settings: ExtractionSettings) -> ImageFeatures | ImageFailure:
    try:
        data = source.file.read_bytes()
    except OSError as error:
        return ImageFailure(f"cannot read file: {error.strerror or error}")
    try:
        decoded = decode_image(data, settings.max_pixels)
    except DecodeError as error:
        return ImageFailure(str(error))
    except Exception as error:  # a decoder bug on one file must not stop the run: record it
        return ImageFailure(f"decoder error: {type(error).__name__}: {error}")
    rgb = decoded.rgb
    return ImageFeatures(
        bytes=len(data),
        width=decoded.width,
        height=decoded.height,
        format=decoded.format,
        mode=decoded.mode,
        frames=decoded.frames,
        content_sha256=content_digest(data),
        pixel_sha256=pixel_digest(rgb),
        notes="; ".join(decoded.notes) or None,
        hashes=perceptual_hashes(
            rgb.convert("L"), settings.hash_size, settings.hash_algorithms, settings.mirrored_algorithms
        ),
        thumbnail=thumbnail(rgb),
        embedding_input=embedding_input(rgb, settings.embedding_size) if settings.embedding_size else None,
    )


def embedding_input(picture: Image.Image, size: int) -> np.ndarray:
    """The model's (size, size, 3) uint8 input for a picture: the whole picture, squashed (a crop
    would lose the borders copies differ in). Calibration prepares its synthetic copies with this
    too, so their embeddings compare with the stored ones."""
    return np.asarray(picture.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0))


def _extract_many(
    sources: Sequence[ImageSource], settings: ExtractionSettings, workers: int
) -> Iterator[ImageFeatures | ImageFailure]:
    work = partial(extract_image, settings=settings)
    if workers <= 1 or len(sources) < 2 * workers:
        yield from map(work, sources)
        return
    chunk_size = max(1, min(64, len(sources) // (workers * 8)))
    for result in ordered_map(work, sources, workers, chunk_size):
        yield ImageFailure(result.reason) if isinstance(result, WorkerCrash) else result


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def extract(
    sources: Sequence[ImageSource],
    settings: ExtractionSettings,
    embedder: Embedder | None,
    workers: int,
    batch_size: int = 64,
    progress: ProgressCallback | None = None,
) -> ExtractionResult:
    manifest_rows: list[dict[str, object]] = []
    failure_rows: list[dict[str, object]] = []
    hash_words: dict[str, list[tuple[int, ...]]] = {
        name: [] for name in [*settings.hash_algorithms, *map(mirror_key, settings.mirrored_algorithms)]
    }
    thumbnails: list[np.ndarray] = []
    embeddings: list[np.ndarray] = []
    pending: list[np.ndarray] = []

    def flush() -> None:
        if pending and embedder is not None:
            embeddings.append(embedder.embed(np.stack(pending)))
        pending.clear()

    for done, (source, result) in enumerate(zip(sources, _extract_many(sources, settings, workers), strict=True), 1):
        if isinstance(result, ImageFailure):
            failure_rows.append(
                {"path": source.path, "split": source.split, "label": source.label, "reason": result.reason}
            )
        else:
            manifest_rows.append(_manifest_row(len(manifest_rows), source, result))
            for name, words in result.hashes.items():
                hash_words[name].append(words)
            thumbnails.append(result.thumbnail)
            if result.embedding_input is not None:
                pending.append(result.embedding_input)
                if len(pending) >= batch_size:
                    flush()
        if progress is not None:
            progress(done, len(sources))
    flush()

    word_count = words_per_hash(settings.hash_size)
    return ExtractionResult(
        manifest=pl.DataFrame(manifest_rows, schema=MANIFEST_SCHEMA),
        failures=pl.DataFrame(failure_rows, schema=FAILURE_SCHEMA),
        hashes={
            name: np.array(words, dtype=np.uint64).reshape(len(words), word_count) for name, words in hash_words.items()
        },
        thumbnails=np.stack(thumbnails)
        if thumbnails
        else np.zeros((0, THUMBNAIL_SIDE, THUMBNAIL_SIDE, 3), dtype=np.uint8),
        embeddings=_stack_embeddings(embeddings, embedder, len(manifest_rows)),
    )


def _stack_embeddings(batches: list[np.ndarray], embedder: Embedder | None, count: int) -> np.ndarray | None:
    if embedder is None:
        return None
    if not batches:
        return np.zeros((count, embedder.dimension), dtype=np.float32)
    return np.concatenate(batches)


def _manifest_row(image_id: int, source: ImageSource, features: ImageFeatures) -> dict[str, object]:
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
            with Image.open(source.file) as image:
                sides.append(min(image.size))
        except Exception:  # unreadable files are reported by extraction itself
            continue
    if not sides:
        return default
    median = int(np.median(sides))
    return int(min(default, max(64, -(-median // 32) * 32)))
