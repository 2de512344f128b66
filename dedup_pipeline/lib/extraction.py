"""Per-image work: read the file once, decode it once, and derive everything from that decode.

Each image yields its manifest facts, its content and pixel digests, its perceptual hashes, its
thumbnail and, when a model is configured, its embedding. JPEGs are decoded only as large as the
largest of those needs (DCT scaling).

Workers are separate processes that take a chunk of images at a time: they hash the chunk's
pictures in one batch, embed them in batches with the worker's own copy of the model (one torch
thread per worker: on this CPU two single-threaded processes embed 16% faster than one process
with two threads, and decoding then never stalls a multi-threaded model), and send back a few
stacked arrays rather than one object per image. Memory stays bounded by the chunks in flight.

The unit of work is a list of :class:`ImageSource`, so a shard or a data drop is just a smaller
list: nothing here depends on the rest of the dataset.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cache, partial
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from PIL import Image

from dedup_pipeline.lib.decoding import DecodeError, decode_image
from dedup_pipeline.lib.hashing import (
    HashBases,
    batch_hashes,
    content_digest,
    hash_base_side,
    mirror_key,
    pixel_digest,
    words_per_hash,
)
from dedup_pipeline.lib.parallel import WorkerCrash, map_chunks
from dedup_pipeline.lib.pictures import Picture, resized, rgb_pixels
from dedup_pipeline.lib.sources import ImageSource
from dedup_pipeline.lib.thumbnails import THUMBNAIL_SIDE, thumbnail

if TYPE_CHECKING:  # imported only where a model is configured
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
    embedding_model: str | None = None  # a name or import path for load_embedder; None: no embeddings
    embedding_batch_size: int = 64
    embedding_threads: int | None = None  # torch threads of the process that embeds (None: torch's default)

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
    the decodable ones (in the same order) their hashes, thumbnails and embeddings, stacked."""

    outcomes: list[ImageFacts | ImageFailure]
    hashes: dict[str, np.ndarray]  # hash name -> (decoded, words) uint64
    thumbnails: np.ndarray  # (decoded, side, side, 3) uint8
    embeddings: np.ndarray | None  # (decoded, dimension) float32, unit rows


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
        with open(source.file, "rb", buffering=0) as file:  # unbuffered: one read, half pathlib's overhead
            data = file.readall()
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


@cache
def embedder_for(model: str, image_size: int, threads: int | None) -> Embedder:
    """This process's copy of a model (loaded once per process)."""
    import torch

    from dedup_pipeline.lib.embedding import load_embedder

    if threads:
        torch.set_num_threads(threads)
    embedder = load_embedder(model, image_size)
    if embedder is None:
        raise ValueError(f"embedding model {model!r} is disabled")
    return embedder


def embed_in_batches(embedder: Embedder, inputs: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
    """Embeddings of model inputs, ``batch_size`` at a time: (len(inputs), dimension) float32."""
    batches = [embedder.embed(np.stack(inputs[k : k + batch_size])) for k in range(0, len(inputs), batch_size)]
    return np.concatenate(batches) if batches else np.zeros((0, embedder.dimension), dtype=np.float32)


def extract_chunk(sources: Sequence[ImageSource], settings: ExtractionSettings) -> ExtractedChunk:
    """Everything extraction derives from a chunk of images, one decode each (runs in a worker)."""
    outcomes: list[ImageFacts | ImageFailure] = []
    bases, thumbnails, inputs = HashBases(settings.hash_size), [], []
    for source in sources:
        decoded = decode_source(source, settings)
        if isinstance(decoded, ImageFailure):
            outcomes.append(decoded)
            continue
        facts, picture = decoded
        outcomes.append(facts)
        bases.add(picture)
        thumbnails.append(thumbnail(picture))
        if settings.embedding_model and settings.embedding_size:
            inputs.append(embedding_input(picture, settings.embedding_size))
    embeddings = None
    if settings.embedding_model and settings.embedding_size:
        embedder = embedder_for(settings.embedding_model, settings.embedding_size, settings.embedding_threads)
        embeddings = embed_in_batches(embedder, inputs, settings.embedding_batch_size)
    return ExtractedChunk(
        outcomes=outcomes,
        hashes=batch_hashes(
            bases.stacked(),
            settings.hash_size,
            settings.hash_algorithms,
            settings.mirrored_algorithms,
        ),
        thumbnails=np.stack(thumbnails) if thumbnails else np.zeros((0, THUMBNAIL_SIDE, THUMBNAIL_SIDE, 3), np.uint8),
        embeddings=embeddings,
    )


def embedding_input(picture: Picture, size: int) -> np.ndarray:
    """The model's (size, size, 3) uint8 input for a picture: the whole picture, squashed (a crop
    would lose the borders copies differ in). Calibration prepares its synthetic copies with this
    too, so their embeddings compare with the stored ones."""
    return resized(rgb_pixels(picture), size, Image.Resampling.BILINEAR, reducing_gap=3.0)


def _extract_chunks(
    sources: Sequence[ImageSource], settings: ExtractionSettings, workers: int
) -> Iterator[tuple[range, ExtractedChunk | WorkerCrash]]:
    work = partial(extract_chunk, settings=settings)
    if workers <= 1:
        for start in range(0, len(sources), CHUNK_SIZE):
            span = range(start, min(start + CHUNK_SIZE, len(sources)))
            yield span, work(sources[span.start : span.stop])
        return
    chunk_size = max(1, min(CHUNK_SIZE, len(sources) // (workers * 8)))
    yield from map_chunks(work, sources, workers, chunk_size)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


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
    embeddings: list[np.ndarray] = []
    workers = workers if len(sources) >= 2 * workers else 1  # a handful of images: not worth the processes
    if workers > 1:
        settings = replace(settings, embedding_threads=max(1, default_workers() // workers))

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
        embeddings=_stacked_embeddings(embeddings, settings, len(manifest_rows)),
    )


def _stacked_embeddings(parts: list[np.ndarray], settings: ExtractionSettings, count: int) -> np.ndarray | None:
    if not (settings.embedding_model and settings.embedding_size):
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
            with Image.open(source.file) as image:
                sides.append(min(image.size))
        except Exception:  # unreadable files are reported by extraction itself
            continue
    if not sides:
        return default
    median = int(np.median(sides))
    return int(min(default, max(64, -(-median // 32) * 32)))
