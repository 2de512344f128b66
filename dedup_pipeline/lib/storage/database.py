"""DuckDB storage: the tables each asset writes, and the stable contract views.

Tables (one per asset) may gain columns over time; the views below are the contract that outside
tools rely on and keep their exact columns:

* ``duplicate_pairs(path_a, path_b, split_a, split_b, label_a, label_b, hamming, cosine, evidence)``
* ``leaks``: the rows of ``duplicate_pairs`` whose splits differ
* ``dedup_manifest(path, split, label, keep, reason)``
* ``image_errors(path, split, reason)``
"""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from dedup_pipeline.lib.features.hashing import mirror_key
from dedup_pipeline.lib.search.similar_pairs import EMBEDDING_EVIDENCE, VERIFIED_EVIDENCE, MatchThresholds
from dedup_pipeline.lib.verification.pair_scorer import PairScorer

VIEW_HASHES_COLUMN = "view_phashes"
CONTRACT_VIEWS: dict[str, str] = {
    "image_errors": "SELECT path, split, reason FROM image_failures",
    "duplicate_pairs": """
        SELECT a.path AS path_a, b.path AS path_b, a.split AS split_a, b.split AS split_b,
               a.label AS label_a, b.label AS label_b, p.hamming, p.cosine, p.evidence
        FROM similar_pairs p
        JOIN image_manifest a ON a.image_id = p.image_id_a
        JOIN image_manifest b ON b.image_id = p.image_id_b""",
    "leaks": "SELECT * FROM duplicate_pairs WHERE split_a <> split_b",
    "dedup_manifest": "SELECT path, split, label, keep, reason FROM dedup_decisions",
}


def write_table(connection: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame | pa.Table) -> None:
    """Replace table ``name`` with ``frame`` (atomically, in one transaction)."""
    table = frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame
    connection.register("_incoming", table)
    try:
        connection.execute("BEGIN TRANSACTION")
        connection.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM _incoming')
        connection.execute("COMMIT")
    except Exception:
        connection.execute("ROLLBACK")
        raise
    finally:
        connection.unregister("_incoming")


def create_views(connection: duckdb.DuckDBPyConnection, names: list[str]) -> None:
    for name in names:
        connection.execute(f'CREATE OR REPLACE VIEW "{name}" AS {CONTRACT_VIEWS[name]}')


def read_table(connection: duckdb.DuckDBPyConnection, name: str, order_by: str | None = None) -> pl.DataFrame:
    order = f" ORDER BY {order_by}" if order_by else ""
    return connection.execute(f'SELECT * FROM "{name}"{order}').pl()


def read_manifest(connection: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The manifest in image_id order; downstream code indexes arrays by image_id."""
    manifest = read_table(connection, "image_manifest", order_by="image_id")
    if not manifest["image_id"].equals(pl.Series("image_id", range(manifest.height), dtype=manifest["image_id"].dtype)):
        raise ValueError("image_manifest.image_id must be 0..N-1: rematerialize image_manifest")
    return manifest


def hashes_table(manifest: pl.DataFrame, hashes: dict[str, np.ndarray], hash_size: int) -> pl.DataFrame:
    """One row per image, one column per algorithm: a BIGINT when the hash fits 64 bits (the
    default), else a BIGINT[] of 64-bit words, most significant first. Values are the unsigned
    words stored in two's complement."""
    columns: dict[str, pl.Series] = {}
    for name, words in hashes.items():
        signed = np.ascontiguousarray(words, dtype=np.uint64).view(np.int64)
        columns[name] = pl.Series(name, signed[:, 0]) if signed.shape[1] == 1 else pl.Series(name, signed.tolist())
    return manifest.select("image_id", "path").with_columns(
        pl.lit(hash_size, dtype=pl.Int32).alias("hash_size"), **columns
    )


def read_hashes(connection: duckdb.DuckDBPyConnection, algorithms: list[str]) -> dict[str, np.ndarray]:
    """Hashes as (n_images, words) uint64 arrays, rows in image_id order; the mirrored-picture
    hashes of these algorithms come along (under their mirror_key names) when they were stored."""
    stored = {row[0] for row in connection.execute("DESCRIBE image_hashes").fetchall()}
    names = [name for algorithm in algorithms for name in (algorithm, mirror_key(algorithm)) if name in stored]
    if not names:
        return {}
    frame = connection.execute(f"SELECT {', '.join(names)} FROM image_hashes ORDER BY image_id").pl()
    result: dict[str, np.ndarray] = {}
    for name in names:
        column = frame[name]
        if column.dtype == pl.List(pl.Int64):
            signed = np.array(column.to_list(), dtype=np.int64).reshape(frame.height, -1)
        else:
            signed = column.to_numpy().astype(np.int64).reshape(-1, 1)
        result[name] = signed.view(np.uint64)
    return result


def embeddings_table(manifest: pl.DataFrame, embeddings: np.ndarray | None, model: str, image_size: int) -> pa.Table:
    """Embeddings as a fixed-size FLOAT[dimension] column (DuckDB ARRAY); no rows when disabled."""
    if embeddings is None:
        manifest, embeddings = manifest.head(0), np.zeros((0, 1), dtype=np.float32)
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])
    return pa.table(
        {
            "image_id": pa.array(manifest["image_id"].to_numpy()),
            "path": pa.array(manifest["path"].to_list(), type=pa.string()),
            "model": pa.array([model] * manifest.height, type=pa.string()),
            "image_size": pa.array([image_size] * manifest.height, type=pa.int32()),
            "embedding": column,
        }
    )


def _by_image_id(connection: duckdb.DuckDBPyConnection, table: str, columns: str) -> pa.Table:
    """``columns`` of ``table`` in image_id order. Tables are written in that order and a plain scan
    returns it, which is checked; an ``ORDER BY`` would make DuckDB sort wide rows (a second or
    more for 60,000 embeddings) to find them already sorted."""
    rows = connection.execute(f'SELECT image_id, {columns} FROM "{table}"').to_arrow_table()
    ids = rows.column("image_id").to_numpy()
    if len(ids) and not np.all(ids[1:] > ids[:-1]):
        rows = rows.take(np.argsort(ids, kind="stable"))
    return rows


def _array_rows(column: pa.ChunkedArray, dtype: type[np.generic]) -> np.ndarray:
    """A fixed-size array column (DuckDB ``TYPE[n]``) as an (rows, n) array, one copy."""
    parts = [chunk.flatten().to_numpy(zero_copy_only=False) for chunk in column.chunks]
    values = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    return values.astype(dtype, copy=False).reshape(len(column), column.type.list_size)


def read_embeddings(connection: duckdb.DuckDBPyConnection) -> np.ndarray | None:
    """Embeddings in image_id order, or None when the table is empty (embeddings disabled)."""
    table = _by_image_id(connection, "image_embeddings", "embedding")
    if table.num_rows == 0:
        return None
    return _array_rows(table.column("embedding"), np.float32)


def thumbnails_table(manifest: pl.DataFrame, thumbnails: np.ndarray, view_hashes: np.ndarray | None) -> pa.Table:
    """Thumbnails as raw RGB bytes (side x side x 3, row-major), with their side and, when they were
    computed, their ``views.view_hashes`` (a BIGINT[] per image: the unsigned words in two's
    complement)."""
    side = thumbnails.shape[1]
    flat = np.ascontiguousarray(thumbnails, dtype=np.uint8).reshape(len(thumbnails), side * side * 3)
    columns = {
        "image_id": pa.array(manifest["image_id"].to_numpy()),
        "side": pa.array([side] * len(flat), type=pa.int32()),
        "thumbnail": pa.Array.from_buffers(pa.binary(flat.shape[1]), len(flat), [None, pa.py_buffer(flat)]).cast(
            pa.binary()
        ),
    }
    if view_hashes is not None:
        signed = np.ascontiguousarray(view_hashes, dtype=np.uint64).view(np.int64)
        columns[VIEW_HASHES_COLUMN] = pa.FixedSizeListArray.from_arrays(pa.array(signed.ravel()), signed.shape[1])
    return pa.table(columns)


def read_thumbnails(connection: duckdb.DuckDBPyConnection) -> np.ndarray:
    """(n_images, side, side, 3) uint8 in image_id order."""
    table = _by_image_id(connection, "image_thumbnails", "side, thumbnail")
    if table.num_rows == 0:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    side = table.column("side")[0].as_py()
    size = side * side * 3
    # as fixed-size binary, a chunk's values are one contiguous buffer
    chunks = table.column("thumbnail").cast(pa.binary(size)).chunks
    values = [
        np.frombuffer(chunk.buffers()[1], np.uint8)[chunk.offset * size :][: len(chunk) * size] for chunk in chunks
    ]
    return np.concatenate(values).reshape(table.num_rows, side, side, 3)


def read_view_hashes(connection: duckdb.DuckDBPyConnection) -> np.ndarray | None:
    """The stored ``views.view_hashes`` in image_id order, or None when they were not stored (no
    verifier was configured, or an earlier version wrote the table): they are then computed from
    the thumbnails."""
    stored = {row[0] for row in connection.execute("DESCRIBE image_thumbnails").fetchall()}
    if VIEW_HASHES_COLUMN not in stored:
        return None
    return _array_rows(
        _by_image_id(connection, "image_thumbnails", VIEW_HASHES_COLUMN).column(VIEW_HASHES_COLUMN), np.int64
    ).view(np.uint64)


def write_verifier(connection: duckdb.DuckDBPyConnection, scorer: PairScorer | None) -> None:
    """The trained pair verifier as JSON (no row when there is none)."""
    rows = [] if scorer is None else [{"model": scorer.to_json(), "threshold": scorer.threshold}]
    write_table(connection, "pair_verifier", pl.DataFrame(rows, schema={"model": pl.String, "threshold": pl.Float64}))


def read_verifier(connection: duckdb.DuckDBPyConnection) -> PairScorer | None:
    tables = {name for (name,) in connection.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "pair_verifier" not in tables:
        return None
    row = connection.execute("SELECT model FROM pair_verifier").fetchone()
    return None if row is None else PairScorer.from_json(row[0])


def read_match_thresholds(connection: duckdb.DuckDBPyConnection) -> MatchThresholds:
    """The thresholds the match_thresholds asset chose (rows without a threshold do not match)."""
    rows = connection.execute(
        "SELECT evidence, threshold, coalesce(mirror_aware, false) FROM match_thresholds "
        f"WHERE threshold IS NOT NULL AND evidence NOT IN ('combined', '{VERIFIED_EVIDENCE}')"
    ).fetchall()
    chosen = {evidence: threshold for evidence, threshold, _ in rows}
    cosine = chosen.pop(EMBEDDING_EVIDENCE, None)
    return MatchThresholds(
        hamming={name: int(value) for name, value in chosen.items()},
        cosine=cosine,
        mirrored=frozenset(evidence for evidence, _, mirror in rows if mirror and evidence != EMBEDDING_EVIDENCE),
        verifier=read_verifier(connection),
    )
