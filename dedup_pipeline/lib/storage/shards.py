"""A drop's extraction outputs as tables (the store's shard files), and back to arrays.

Every row carries its image's stable ``image_id`` and its drop's sequence number (``drop_seq``):
the id is the first 63 bits of SHA-256 over the image's path and content digest, so the same file
gets the same id in every run (an incremental one and a from-scratch one), a file rewritten in
place gets a new one, and no coordination between extraction processes is needed.
"""

from __future__ import annotations

import hashlib

import numpy as np
import polars as pl
import pyarrow as pa

from dedup_pipeline.lib.features.extraction import FAILURE_SCHEMA, ExtractionResult, ProgressCallback, extract
from dedup_pipeline.lib.features.image_work import ExtractionSettings
from dedup_pipeline.lib.inputs.sources import ImageSource
from dedup_pipeline.lib.storage.store import DELETED, IMAGE, PROBLEM, Drop, Store

VIEW_HASHES_COLUMN = "view_phashes"
SHARD_FAILURE_SCHEMA = {**FAILURE_SCHEMA, "kind": pl.String, "drop_seq": pl.Int64}


def stable_image_id(path: str, content_sha256: str) -> int:
    digest = hashlib.sha256(f"{path}\0{content_sha256}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def with_stable_ids(manifest: pl.DataFrame, drop_seq: int) -> pl.DataFrame:
    """An extraction's manifest with stable image ids and its drop's sequence number."""
    ids = [
        stable_image_id(path, digest) for path, digest in zip(manifest["path"], manifest["content_sha256"], strict=True)
    ]
    return manifest.with_columns(
        pl.Series("image_id", ids, dtype=pl.Int64), pl.lit(drop_seq, dtype=pl.Int64).alias("drop_seq")
    )


def hashes_table(manifest: pl.DataFrame, hashes: dict[str, np.ndarray], hash_size: int) -> pl.DataFrame:
    """One row per image, one column per algorithm: a BIGINT when the hash fits 64 bits (the
    default), else a BIGINT[] of 64-bit words, most significant first. Values are the unsigned
    words stored in two's complement."""
    columns: dict[str, pl.Series] = {}
    for name, words in hashes.items():
        signed = np.ascontiguousarray(words, dtype=np.uint64).view(np.int64)
        columns[name] = pl.Series(name, signed[:, 0]) if signed.shape[1] == 1 else pl.Series(name, signed.tolist())
    return manifest.select("image_id", "drop_seq", "path").with_columns(
        pl.lit(hash_size, dtype=pl.Int32).alias("hash_size"), **columns
    )


def _fixed_binary(rows: np.ndarray) -> pa.Array:
    """Each row of a 2-d array as one fixed-size binary value (its raw bytes, row-major)."""
    rows = np.ascontiguousarray(rows)
    width = rows.itemsize * int(np.prod(rows.shape[1:]))
    return pa.Array.from_buffers(pa.binary(max(width, 1)), len(rows), [None, pa.py_buffer(rows)])


def _table(columns: dict[str, pa.Array], required: str) -> pa.Table:
    """A table of ``columns`` whose ``required`` column is declared not nullable (it never holds a
    null: the store maps such columns, see raw_columns)."""
    fields = [pa.field(name, array.type, nullable=name != required) for name, array in columns.items()]
    return pa.Table.from_arrays(list(columns.values()), schema=pa.schema(fields))


def embeddings_table(manifest: pl.DataFrame, embeddings: np.ndarray | None, model: str, image_size: int) -> pa.Table:
    """Embeddings as raw little-endian float32 bytes (a BLOB of ``dimension`` floats per image;
    ``numpy.frombuffer(blob, '<f4')``): read back 3x faster than a Parquet list of floats, whose
    levels are decoded value by value. No rows when embeddings are off."""
    if embeddings is None:
        manifest, embeddings = manifest.head(0), np.zeros((0, 1), dtype=np.float32)
    vectors = np.ascontiguousarray(embeddings, dtype="<f4")
    return _table(
        {
            "image_id": pa.array(manifest["image_id"].to_numpy(), type=pa.int64()),
            "drop_seq": pa.array(manifest["drop_seq"].to_numpy(), type=pa.int64()),
            "path": pa.array(manifest["path"].to_list(), type=pa.string()),
            "model": pa.array([model] * manifest.height, type=pa.string()),
            "image_size": pa.array([image_size] * manifest.height, type=pa.int32()),
            "dimension": pa.array([vectors.shape[1]] * manifest.height, type=pa.int32()),
            "embedding": _fixed_binary(vectors),
        },
        required="embedding",
    )


def array_rows(column: pa.ChunkedArray, dtype: type[np.generic]) -> np.ndarray:
    """An array column (fixed-size, or a list of equal lengths as Parquet returns it) as a
    (rows, n) array, one copy."""
    parts = [chunk.flatten().to_numpy(zero_copy_only=False) for chunk in column.chunks]
    values = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    width = values.size // len(column) if len(column) else 0
    return values.astype(dtype, copy=False).reshape(len(column), width)


def thumbnails_table(manifest: pl.DataFrame, thumbnails: np.ndarray, view_hashes: np.ndarray | None) -> pa.Table:
    """Thumbnails as raw RGB bytes (side x side x 3, row-major), with their side and, when they were
    computed, their ``views.view_hashes`` (a BIGINT[] per image: the unsigned words in two's
    complement)."""
    side = thumbnails.shape[1] if thumbnails.ndim == 4 else 0
    columns = {
        "image_id": pa.array(manifest["image_id"].to_numpy(), type=pa.int64()),
        "drop_seq": pa.array(manifest["drop_seq"].to_numpy(), type=pa.int64()),
        "side": pa.array([side] * len(thumbnails), type=pa.int32()),
        "thumbnail": _fixed_binary(np.asarray(thumbnails, dtype=np.uint8)),
    }
    if view_hashes is not None:
        signed = np.ascontiguousarray(view_hashes, dtype=np.uint64).view(np.int64)
        columns[VIEW_HASHES_COLUMN] = pa.FixedSizeListArray.from_arrays(pa.array(signed.ravel()), signed.shape[1])
    return _table(columns, required="thumbnail")


def binary_rows(column: pa.ChunkedArray | pa.Array, dtype: str) -> np.ndarray:
    """A fixed-size binary column as a (rows, values) array of ``dtype`` (a view of the column's
    buffer when it is one chunk, else one copy)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    width = column.type.byte_width
    parts = [
        np.frombuffer(chunk.buffers()[1], np.uint8)[chunk.offset * width :][: len(chunk) * width] for chunk in chunks
    ]
    values = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.zeros(0, np.uint8)
    return values.view(dtype).reshape(len(column), -1)


def shard_tables(
    drop_seq: int,
    extracted: ExtractionResult,
    failures: pl.DataFrame,
    hash_size: int,
    model: str,
    image_size: int,
) -> dict[str, pl.DataFrame | pa.Table]:
    """The store's tables for one extracted drop. ``failures`` has :data:`SHARD_FAILURE_SCHEMA`'s
    columns but ``drop_seq`` (``kind`` is ``image`` for files that could not be decoded, ``problem``
    for inputs that never were images)."""
    manifest = with_stable_ids(extracted.manifest, drop_seq)
    return {
        "manifest": manifest,
        "failures": failures.with_columns(pl.lit(drop_seq, dtype=pl.Int64).alias("drop_seq")).select(
            list(SHARD_FAILURE_SCHEMA)
        ),
        "hashes": hashes_table(manifest, extracted.hashes, hash_size),
        "thumbnails": thumbnails_table(manifest, extracted.thumbnails, extracted.view_hashes),
        "embeddings": embeddings_table(manifest, extracted.embeddings, model, image_size),
    }


def drop_sources(events: pl.DataFrame) -> tuple[list[ImageSource], pl.DataFrame]:
    """What a drop's extraction reads (its added and changed images) and the failure rows of its
    problems (:data:`SHARD_FAILURE_SCHEMA` without ``drop_seq``)."""
    current = events.filter(pl.col("change") != DELETED)
    images = current.filter(pl.col("kind") == IMAGE)
    sources = [
        ImageSource(path, split, label, file)
        for path, split, label, file in images.select("path", "split", "label", "file").iter_rows()
    ]
    problems = current.filter(pl.col("kind") == PROBLEM).select("path", "split", "label", "reason", pl.col("kind"))
    return sources, problems


def extract_drop(
    store: Store,
    drop: Drop,
    settings: ExtractionSettings,
    workers: int,
    model: str,
    progress: ProgressCallback | None = None,
) -> bool:
    """Extract a registered drop into its shard; False when it was extracted already (nothing is
    done: re-running a drop gives the same rows, once)."""
    if store.is_extracted(drop):
        return False
    sources, problems = drop_sources(store.events([drop]))
    extracted = extract(sources, settings, workers=workers, progress=progress)
    failures = pl.concat(
        [problems, extracted.failures.with_columns(pl.lit(IMAGE).alias("kind"))], how="vertical_relaxed"
    ).sort("path")
    store.write_shard(
        drop,
        shard_tables(
            drop.sequence,
            extracted,
            failures,
            settings.hash_size,
            model,
            settings.embedding_size or 0,
        ),
    )
    return True
