"""The per-image work of extraction, as worker processes run it: read each file once, decode it
once, and derive everything from that decode.

Each image yields its manifest facts, its content and pixel digests, its perceptual hashes, its
thumbnail with its view hashes (``views``) and, when a model is configured, its embedding. JPEGs
are decoded only as large as the largest of those needs (DCT scaling).

A worker takes a chunk of files at a time: it hashes the chunk's pictures in one batch, embeds them
in batches with the worker's own copy of the model (one thread per worker: on this CPU two
single-threaded processes embed 16% faster than one process with two threads, and decoding then
never stalls a multi-threaded model), and sends back a few stacked arrays rather than one object
per image. Workers get plain file paths and import neither polars, Dagster nor torch (the model runs
in ONNX Runtime): a worker starts in about a tenth of a second.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from dedup_pipeline.defaults import DEFAULT_FILE_SECONDS
from dedup_pipeline.lib.features.hashing import (
    HashBases,
    batch_hashes,
    content_digest,
    hash_base_side,
    mirror_key,
    pixel_digest,
)
from dedup_pipeline.lib.features.thumbnails import THUMBNAIL_SIDE, thumbnail
from dedup_pipeline.lib.features.views import view_hashes
from dedup_pipeline.lib.inputs.decoding import DecodeError, decode_image
from dedup_pipeline.lib.inputs.pictures import Picture, resized, rgb_pixels
from dedup_pipeline.lib.inputs.sources import local_path
from dedup_pipeline.lib.runtime.time_limit import TimeLimitExceeded, time_limit

if TYPE_CHECKING:  # imported only where a model is configured
    from dedup_pipeline.lib.features.embedding import Embedder


RUN_SETTINGS = ("embedding_threads", "file_seconds")  # extraction settings a store does not record


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
    embedding_threads: int | None = None  # threads of the process that embeds (None: one per core)
    view_hashes: bool = True  # hash each thumbnail's geometric views (the pair verifier's candidates)
    file_seconds: float | None = DEFAULT_FILE_SECONDS  # per-file limit on reading and decoding (None: none)

    @property
    def embeds(self) -> bool:
        return bool(self.embedding_model and self.embedding_size)

    def record(self) -> dict[str, object]:
        """The settings as a store records them (threads and the time limit are the run's, not the
        store's: they change no image's outputs)."""
        record = dataclasses.asdict(self)
        for name in RUN_SETTINGS:
            record.pop(name)
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, object]) -> ExtractionSettings:
        names = {field.name for field in dataclasses.fields(cls)} - set(RUN_SETTINGS)
        return cls(**{name: tuple(v) if isinstance(v, list) else v for name, v in record.items() if name in names})

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
    view_hashes: np.ndarray | None  # (decoded, 2 + len(VIEWS)) uint64: views.view_hashes of the thumbnails
    embeddings: np.ndarray | None  # (decoded, dimension) float32, unit rows


def read_bytes(file: str | Path) -> bytes:
    """A file's bytes in as few system calls as Python allows (open, fstat, one read, close): about
    a third less overhead than an unbuffered ``open().readall()``, which matters on tiny files.
    ``file`` is a stored path (``sources.stored_path``)."""
    descriptor = os.open(local_path(str(file)), os.O_RDONLY)
    try:
        size = os.fstat(descriptor).st_size
        data = os.read(descriptor, size + 1)
        if len(data) == size:  # the whole file (a regular file's read stops short only at its end)
            return data
        parts = [data]  # grown since fstat, or a file system that reads in parts: read to the end
        while part := os.read(descriptor, 1 << 20):
            parts.append(part)
        return b"".join(parts)
    finally:
        os.close(descriptor)


def decode_file(file: str | Path, settings: ExtractionSettings) -> tuple[ImageFacts, np.ndarray] | ImageFailure:
    """Read and decode one image: its manifest facts and its canonical RGB pixels, or why not
    (within ``settings.file_seconds``)."""
    try:
        with time_limit(settings.file_seconds):
            return _read_and_decode(file, settings)
    except TimeLimitExceeded:
        return ImageFailure(
            f"reading and decoding took longer than the per-file time limit ({settings.file_seconds:g} s)"
        )


def _read_and_decode(file: str | Path, settings: ExtractionSettings) -> tuple[ImageFacts, np.ndarray] | ImageFailure:
    try:
        data = read_bytes(file)
    except OSError as error:
        return ImageFailure(f"cannot read file: {error.strerror or error}")
    if not data:
        return ImageFailure("empty file (0 bytes)")
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
    from dedup_pipeline.lib.features.embedding import load_embedder

    embedder = load_embedder(model, image_size, threads)
    if embedder is None:
        raise ValueError(f"embedding model {model!r} is disabled")
    return embedder


def embed_in_batches(embedder: Embedder, inputs: Sequence[np.ndarray], batch_size: int) -> np.ndarray:
    """Embeddings of model inputs, ``batch_size`` at a time: (len(inputs), dimension) float32.

    Every batch the model sees has exactly ``batch_size`` pictures (the last is padded with black
    ones), because a convolution's rounding depends on the batch size: the same picture embedded
    alone and in a batch of 64 differed by up to 6e-7 here, and within a batch of one size it was
    the same bit for bit whatever its companions and position. So an image embedded in a small
    data drop gets exactly the embedding a from-scratch run gives it."""
    batches = []
    for start in range(0, len(inputs), batch_size):
        batch = np.stack(inputs[start : start + batch_size])
        padding = batch_size - len(batch)
        if padding:
            batch = np.concatenate([batch, np.zeros((padding, *batch.shape[1:]), dtype=batch.dtype)])
        batches.append(embedder.embed(batch)[: batch_size - padding])
    return np.concatenate(batches) if batches else np.zeros((0, embedder.dimension), dtype=np.float32)


def extract_chunk(files: Sequence[str | Path], settings: ExtractionSettings) -> ExtractedChunk:
    """Everything extraction derives from a chunk of images, one decode each (runs in a worker)."""
    outcomes: list[ImageFacts | ImageFailure] = []
    bases, thumbnails, inputs = HashBases(settings.hash_size), [], []
    for file in files:
        decoded = decode_file(file, settings)
        if isinstance(decoded, ImageFailure):
            outcomes.append(decoded)
            continue
        facts, picture = decoded
        outcomes.append(facts)
        bases.add(picture)
        thumbnails.append(thumbnail(picture))
        if settings.embeds:
            inputs.append(embedding_input(picture, settings.embedding_size))
    embeddings = None
    if settings.embeds:
        embedder = embedder_for(settings.embedding_model, settings.embedding_size, settings.embedding_threads)
        embeddings = embed_in_batches(embedder, inputs, settings.embedding_batch_size)
    stacked = np.stack(thumbnails) if thumbnails else np.zeros((0, THUMBNAIL_SIDE, THUMBNAIL_SIDE, 3), np.uint8)
    return ExtractedChunk(
        outcomes=outcomes,
        hashes=batch_hashes(
            bases.stacked(),
            settings.hash_size,
            settings.hash_algorithms,
            settings.mirrored_algorithms,
        ),
        thumbnails=stacked,
        view_hashes=view_hashes(stacked) if settings.view_hashes else None,
        embeddings=embeddings,
    )


def embedding_input(picture: Picture, size: int) -> np.ndarray:
    """The model's (size, size, 3) uint8 input for a picture: the whole picture, squashed (a crop
    would lose the borders copies differ in). Calibration prepares its synthetic copies with this
    too, so their embeddings compare with the stored ones."""
    return resized(rgb_pixels(picture), size, Image.Resampling.BILINEAR, reducing_gap=3.0)
