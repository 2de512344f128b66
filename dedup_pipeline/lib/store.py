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

from dedup_pipeline.lib.hashing import mirror_key
from dedup_pipeline.lib.pair_scorer import PairScorer
from dedup_pipeline.lib.pairs import EMBEDDING_EVIDENCE, VERIFIED_EVIDENCE, MatchThresholds

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


def read_embeddings(connection: duckdb.DuckDBPyConnection) -> np.ndarray | None:
    """Embeddings in image_id order, or None when the table is empty (embeddings disabled)."""
    table = connection.execute("SELECT embedding FROM image_embeddings ORDER BY image_id").fetch_arrow_table()
    if table.num_rows == 0:
        return None
    column = table.column("embedding").combine_chunks()
    return column.values.to_numpy(zero_copy_only=False).reshape(table.num_rows, -1).astype(np.float32)


def thumbnails_table(manifest: pl.DataFrame, thumbnails: np.ndarray) -> pa.Table:
    """Thumbnails as raw RGB bytes (side x side x 3, row-major), with their side."""
    side = thumbnails.shape[1]
    flat = np.ascontiguousarray(thumbnails, dtype=np.uint8).reshape(len(thumbnails), side * side * 3)
    return pa.table(
        {
            "image_id": pa.array(manifest["image_id"].to_numpy()),
            "side": pa.array([side] * len(flat), type=pa.int32()),
            "thumbnail": pa.array([row.tobytes() for row in flat], type=pa.binary()),
        }
    )


def read_thumbnails(connection: duckdb.DuckDBPyConnection) -> np.ndarray:
    """(n_images, side, side, 3) uint8 in image_id order."""
    table = connection.execute("SELECT side, thumbnail FROM image_thumbnails ORDER BY image_id").fetch_arrow_table()
    if table.num_rows == 0:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8)
    side = table.column("side")[0].as_py()
    raw = b"".join(value.as_py() for value in table.column("thumbnail"))
    return np.frombuffer(raw, dtype=np.uint8).reshape(table.num_rows, side, side, 3)


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
