"""Per-image work: read the file once, decode it once, and derive everything from that decode.

Each image yields its manifest facts, its content and pixel digests, its perceptual hashes, its
thumbnail and, when an embedder is configured, its embedding input (resized once, in the worker
that decoded it). JPEGs are decoded only as large as the largest of those needs (DCT scaling).

Workers are separate processes that take a chunk of images at a time: they hash the chunk's
pictures in one batch and send back a few stacked arrays rather than one object per image.
Embeddings are computed in the parent in batches as chunks stream in, so memory stays bounded by
a few chunks of model inputs.

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
from dedup_pipeline.lib.hashing import (
    batch_hashes,
    content_digest,
    hash_base,
    hash_base_side,
    mirror_key,
    pixel_digest,
    words_per_hash,
)
from dedup_pipeline.lib.parallel import WorkerCrash, map_chunks
from dedup_pipeline.lib.pictures import Picture, resized, rgb_pixels
from dedup_pipeline.lib.sources import ImageSource
from dedup_pipeline.lib.thumbnails import THUMBNAIL_SIDE, thumbnail

if TYPE_CHECKING:  # workers import this module: keep torch out of them
    from dedup_pipeline.lib.embedding import Embedder

ProgressCallback = Callable[[int, int], None]
CHUNK_SIZE = 128  # images per worker task: enough to amortise batched hashing and the hand-over


@dataclass(frozen=True)
class ExtractionSettings:
    hash_size: int
    hash_algorithms: tuple[str, ...]
    embedding_size: int | None
    max_pixels: int
    mirrored_algorithms: tuple[str, ...] = ()  # also hashed on the mirrored picture
    reduced_decoding: bool = True  # decode JPEGs at reduced size when that keeps every output sharp

    def hash_names(self) -> list[str]:
        return [*self.hash_algorithms, *map(mirror_key, self.mirrored_algorithms)]

    def decode_side(self) -> int | None:
        """The smallest side a decode must keep for every output, or None for full decodes."""
        if not self.reduced_decoding:
            return None
        return max(hash_base_side(self.hash_size), THUMBNAIL_SIDE, self.embedding_size or 0)


@dataclass(frozen=True)
class ImageFacts:
    """What the manifest records about one decodable image."""

    bytes: int
    width: int
    height: int
    format: str | None
    mode: str
    frames: int
    content_sha256: str
    pixel_sha256: str
    notes: str | None


@dataclass(frozen=True)
class ImageFailure:
    reason: str


@dataclass
class ExtractedChunk:
    """A worker's result for a chunk of images: each image's facts or failure, in order, and for
    the decodable ones (in the same order) their hashes, thumbnails and embedding inputs, stacked."""

    outcomes: list[ImageFacts | ImageFailure]
    hashes: dict[str, np.ndarray]  # hash name -> (decoded, words) uint64
    thumbnails: np.ndarray  # (decoded, side, side, 3) uint8
    embedding_inputs: np.ndarray | None  # (decoded, size, size, 3) uint8


@dataclass
class ExtractionResult:
    """Decodable images (``manifest``, row i is image i) and the rest (``failures``)."""

    manifest: pl.DataFrame
    failures: pl.DataFrame
    hashes: dict[str, np.ndarray]  # algorithm (or its mirror_key) -> (n_images, words) uint64
    thumbnails: np.ndarray  # (n_images, side, side, 3) uint8
    embeddings: np.ndarray | None  # (n_images, dimension) float32, unit rows


def decode_source(source: ImageSource, settings: ExtractionSettings) -> tuple[ImageFacts, np.ndarray] | ImageFailure:
    """Read and decode one image: its manifest facts and its canonical RGB pixels, or why not."""
    try:
        data = source.file.read_bytes()
    except OSError as error:
        return ImageFailure(f"cannot read file: {error.strerror or error}")
    try:
        decoded = decode_image(data, settings.max_pixels, settings.decode_side())
    except DecodeError as error:
        return ImageFailure(str(error))
    except Exception as error:  # a decoder bug on one file must not stop the run: record it
        return ImageFailure(f"decoder error: {type(error).__name__}: {error}")
    facts = ImageFacts(
        bytes=len(data),
        width=decoded.width,
        height=decoded.height,
        format=decoded.format,
        mode=decoded.mode,
        frames=decoded.frames,
        content_sha256=content_digest(data),
        pixel_sha256=pixel_digest(decoded.pixels),
        notes="; ".join(decoded.notes) or None,
    )
    return facts, decoded.pixels


def extract_chunk(sources: Sequence[ImageSource], settings: ExtractionSettings) -> ExtractedChunk:
    """Everything extraction derives from a chunk of images, one decode each (runs in a worker)."""
    outcomes: list[ImageFacts | ImageFailure] = []
    bases, thumbnails, inputs = [], [], []
    for source in sources:
        decoded = decode_source(source, settings)
        if isinstance(decoded, ImageFailure):
            outcomes.append(decoded)
            continue
        facts, picture = decoded
        outcomes.append(facts)
        bases.append(hash_base(picture, settings.hash_size))
        thumbnails.append(thumbnail(picture))
        if settings.embedding_size:
            inputs.append(embedding_input(picture, settings.embedding_size))
    return ExtractedChunk(
        outcomes=outcomes,
        hashes=batch_hashes(bases, settings.hash_size, settings.hash_algorithms, settings.mirrored_algorithms),
        thumbnails=np.stack(thumbnails) if thumbnails else np.zeros((0, THUMBNAIL_SIDE, THUMBNAIL_SIDE, 3), np.uint8),
        embedding_inputs=_stack_inputs(inputs, settings.embedding_size),
    )


def _stack_inputs(inputs: list[np.ndarray], size: int | None) -> np.ndarray | None:
    if not size:
        return None
    return np.stack(inputs) if inputs else np.zeros((0, size, size, 3), dtype=np.uint8)


def embedding_input(picture: Picture, size: int) -> np.ndarray:
    """The model's (size, size, 3) uint8 input for a picture: the whole picture, squashed (a crop
    would lose the borders copies differ in). Calibration prepares its synthetic copies with this
    too, so their embeddings compare with the stored ones."""
    return resized(rgb_pixels(picture), size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def _extract_chunks(
    sources: Sequence[ImageSource], settings: ExtractionSettings, workers: int
) -> Iterator[tuple[range, ExtractedChunk | WorkerCrash]]:
    work = partial(extract_chunk, settings=settings)
    if workers <= 1 or len(sources) < 2 * workers:
        for start in range(0, len(sources), CHUNK_SIZE):
            span = range(start, min(start + CHUNK_SIZE, len(sources)))
            yield span, work(sources[span.start : span.stop])
        return
    chunk_size = max(1, min(CHUNK_SIZE, len(sources) // (workers * 8)))
    yield from map_chunks(work, sources, workers, chunk_size)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class _EmbeddingBatcher:
    """Collects embedding inputs as chunks arrive and embeds them in batches of ``batch_size``."""

    def __init__(self, embedder: Embedder | None, batch_size: int) -> None:
        self.embedder, self.batch_size = embedder, batch_size
        self.pending: list[np.ndarray] = []
        self.embeddings: list[np.ndarray] = []

    def add(self, inputs: np.ndarray | None) -> None:
        if self.embedder is None or inputs is None or not len(inputs):
            return
        self.pending.append(inputs)
        if sum(map(len, self.pending)) >= self.batch_size:
            self._embed(final=False)

    def _embed(self, final: bool) -> None:
        waiting = np.concatenate(self.pending)
        ready = len(waiting) if final else len(waiting) - len(waiting) % self.batch_size
        for start in range(0, ready, self.batch_size):
            self.embeddings.append(self.embedder.embed(waiting[start : min(start + self.batch_size, ready)]))
        self.pending = [waiting[ready:]] if ready < len(waiting) else []

    def result(self, count: int) -> np.ndarray | None:
        if self.embedder is None:
            return None
        if self.pending:
            self._embed(final=True)
        if not self.embeddings:
            return np.zeros((count, self.embedder.dimension), dtype=np.float32)
        return np.concatenate(self.embeddings)


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
    hash_parts: dict[str, list[np.ndarray]] = {name: [] for name in settings.hash_names()}
    thumbnails: list[np.ndarray] = []
    batcher = _EmbeddingBatcher(embedder, batch_size)

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
            batcher.add(chunk.embedding_inputs)
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
        embeddings=batcher.result(len(manifest_rows)),
    )


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
            with Image.open(source.file) as image:
                sides.append(min(image.size))
        except Exception:  # unreadable files are reported by extraction itself
            continue
    if not sides:
        return default
    median = int(np.median(sides))
    return int(min(default, max(64, -(-median // 32) * 32)))
