"""DuckDB storage: the global tables the assets write, the views over the store's per-drop Parquet
files, and the stable contract views.

Per-image tables (``image_manifest``, ``image_hashes``, ``image_thumbnails``, ``image_embeddings``,
``image_failures``) are views over the shard files of the drops merged so far, restricted to what is
live (``image_catalog``: each input's latest version). Global tables (pairs, clusters, reports,
calibration, join state) live in the database file. Tables may gain columns over time; the views
below are the contract that outside tools rely on and keep their exact columns:

* ``duplicate_pairs(path_a, path_b, split_a, split_b, label_a, label_b, hamming, cosine, evidence)``
* ``leaks``: the rows of ``duplicate_pairs`` whose splits differ
* ``dedup_manifest(path, split, label, keep, reason)``
* ``image_errors(path, split, reason)``

Every value that comes from the data (paths, labels, splits) is passed as a parameter; the only
text put into SQL is table names from the fixed list :data:`TABLES` (checked where a name is
interpolated) and the store's file names, quoted as string literals.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from dedup_pipeline.lib.decisions.overrides import STORED_SCHEMA
from dedup_pipeline.lib.search.criteria import EMBEDDING_EVIDENCE, VERIFIED_EVIDENCE, MatchThresholds
from dedup_pipeline.lib.search.look_alikes import LookAlikeSpace
from dedup_pipeline.lib.search.similar_pairs import JoinState
from dedup_pipeline.lib.storage.write_lock import connect
from dedup_pipeline.lib.verification.base_rate import ExpectedPrecision
from dedup_pipeline.lib.verification.pair_scorer import PairScorer

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
# per-image view -> the shard table it reads, and how a shard row is matched to the live catalog
IMAGE_VIEWS: dict[str, tuple[str, str]] = {
    "image_manifest": ("manifest", "USING (image_id, drop_seq)"),
    "image_hashes": ("hashes", "USING (image_id, drop_seq)"),
    "image_thumbnails": ("thumbnails", "USING (image_id, drop_seq)"),
    "image_embeddings": ("embeddings", "USING (image_id, drop_seq)"),
    "image_failures": ("failures", "ON c.path = s.path AND c.kind = s.kind AND c.drop_seq = s.drop_seq"),
}
CATALOG_TABLE = "image_catalog"
# Every table and view this package names in SQL text; nothing else is ever interpolated as a name.
TABLES = frozenset(
    {
        *CONTRACT_VIEWS,
        *IMAGE_VIEWS,
        CATALOG_TABLE,
        "drops",
        "retired_images",
        "calibration",
        "match_thresholds",
        "pair_verifier",
        "similar_pairs",
        "joined_pairs",
        "pair_overrides",
        "nearest_neighbours",
        "joined_images",
        "look_alikes",
        "join_state",
        "duplicate_clusters",
        "leak_report",
        "label_conflicts",
        "dedup_decisions",
    }
)
ORDERINGS = frozenset({"path", "retired_at DESC"})


def table_name(name: str) -> str:
    """``name`` quoted as an identifier, if it is one of :data:`TABLES`."""
    if name not in TABLES:
        raise ValueError(f"not a table of this package: {name!r}")
    return f'"{name}"'


def quoted(text: str) -> str:
    """A SQL string literal (for file names in view definitions, which cannot take parameters)."""
    return "'" + text.replace("'", "''") + "'"


@contextmanager
def transaction(connection: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Everything in the block is committed together or not at all."""
    connection.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def replace_table(connection: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame | pa.Table) -> None:
    """Replace table ``name`` with ``frame`` (inside the caller's transaction, if any)."""
    table = frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame
    connection.register("_incoming", table)
    try:
        connection.execute(f"CREATE OR REPLACE TABLE {table_name(name)} AS SELECT * FROM _incoming")
    finally:
        connection.unregister("_incoming")


def append_rows(connection: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    """Append ``frame`` to table ``name``, creating it with ``frame``'s columns if needed."""
    connection.register("_incoming", frame.to_arrow())
    try:
        connection.execute(f"CREATE TABLE IF NOT EXISTS {table_name(name)} AS SELECT * FROM _incoming LIMIT 0")
        connection.execute(f"INSERT INTO {table_name(name)} BY NAME SELECT * FROM _incoming")
    finally:
        connection.unregister("_incoming")


def write_table(connection: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame | pa.Table) -> None:
    """Replace table ``name`` with ``frame``, atomically."""
    with transaction(connection):
        replace_table(connection, name, frame)


def create_views(connection: duckdb.DuckDBPyConnection, names: list[str]) -> None:
    for name in names:
        connection.execute(f"CREATE OR REPLACE VIEW {table_name(name)} AS {CONTRACT_VIEWS[name]}")


def create_image_views(connection: duckdb.DuckDBPyConnection, shard_files: Mapping[str, Sequence[str]]) -> None:
    """The per-image views over the shard files of the merged drops (``shard_files``: shard table
    -> its files), each restricted to the live rows of the catalog."""
    for view, (shard_table, match) in IMAGE_VIEWS.items():
        files = ", ".join(quoted(str(path)) for path in shard_files[shard_table])
        connection.execute(
            f"CREATE OR REPLACE VIEW {table_name(view)} AS SELECT s.* "
            f"FROM read_parquet([{files}], union_by_name = true) s JOIN {CATALOG_TABLE} c {match}"
        )


def column_names(connection: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    rows = connection.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table])
    return {name for (name,) in rows.fetchall()}


def table_names(connection: duckdb.DuckDBPyConnection) -> set[str]:
    return {name for (name,) in connection.execute("SELECT table_name FROM information_schema.tables").fetchall()}


def read_table(connection: duckdb.DuckDBPyConnection, name: str, order_by: str | None = None) -> pl.DataFrame:
    """Table ``name`` (one of :data:`TABLES`), ordered by one of :data:`ORDERINGS`."""
    if order_by is not None and order_by not in ORDERINGS:
        raise ValueError(f"not an ordering of this package: {order_by!r}")
    order = f" ORDER BY {order_by}" if order_by else ""
    return connection.execute(f"SELECT * FROM {table_name(name)}{order}").pl()


def read_manifest(connection: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The live images in path order (the positions every array of ``features.LiveImages`` uses)."""
    return read_table(connection, "image_manifest", order_by="path")


VERIFIER_SCHEMA = {
    "model": pl.String,
    "threshold": pl.Float64,
    "look_alike_space": pl.Binary,
    "screen_cutoff": pl.Float64,
    # set by the first join (verification.base_rate): the threshold it chose, the precision to expect
    # of its verdicts and the estimated share of copies among its candidates
    "operating_threshold": pl.Float64,
    "expected_precision": pl.Float64,
    "copy_share": pl.Float64,
}
FIRST_JOIN_COLUMNS = ("operating_threshold", "expected_precision", "copy_share")
CALIBRATION_SCHEMA = {
    "calibration_id": pl.String,
    "source": pl.String,
    "fingerprint": pl.String,
    "images": pl.Int64,
    "calibrated_at": pl.Datetime("us"),
}


def write_verifier(
    connection: duckdb.DuckDBPyConnection, scorer: PairScorer | None, space: LookAlikeSpace | None = None
) -> None:
    """The trained pair verifier as JSON with its look-alike space (no row when there is none);
    its screen cutoff and expected precision are set later, by the first join (:func:`write_first_join`)."""
    rows = (
        []
        if scorer is None
        else [(scorer.to_json(), scorer.threshold, space.to_bytes() if space else None, None, None, None, None)]
    )
    replace_table(connection, "pair_verifier", pl.DataFrame(rows, schema=VERIFIER_SCHEMA, orient="row"))


def write_first_join(
    connection: duckdb.DuckDBPyConnection,
    cutoff: float | None,
    operating_threshold: float | None,
    expected: ExpectedPrecision | None,
) -> None:
    """What the first join under a calibration adds to its verifier: the screen cutoff and the
    operating threshold later joins apply, and the precision its verdicts should have."""
    if cutoff is not None:
        connection.execute("UPDATE pair_verifier SET screen_cutoff = ?", [cutoff])
    if expected is not None:
        _with_first_join_columns(connection)
        connection.execute(
            "UPDATE pair_verifier SET operating_threshold = ?, expected_precision = ?, copy_share = ?",
            [operating_threshold, expected.precision, expected.copy_share],
        )


def read_first_join(connection: duckdb.DuckDBPyConnection) -> dict[str, float | None] | None:
    """What the first join set on the verifier (:data:`FIRST_JOIN_COLUMNS` by name), or None when
    there is no verifier or no first join has set anything yet."""
    if "pair_verifier" not in table_names(connection) or not set(FIRST_JOIN_COLUMNS) <= column_names(
        connection, "pair_verifier"
    ):
        return None
    row = connection.execute(f"SELECT {', '.join(FIRST_JOIN_COLUMNS)} FROM pair_verifier").fetchone()
    if row is None or all(value is None for value in row):
        return None
    return dict(zip(FIRST_JOIN_COLUMNS, row, strict=True))


def _with_first_join_columns(connection: duckdb.DuckDBPyConnection) -> None:
    """Verifiers stored before the first join set an operating point lack its columns."""
    for column in FIRST_JOIN_COLUMNS:  # names from this module
        connection.execute(f"ALTER TABLE pair_verifier ADD COLUMN IF NOT EXISTS {column} DOUBLE")


def read_match_thresholds(connection: duckdb.DuckDBPyConnection) -> MatchThresholds:
    """The thresholds the match_thresholds asset chose (rows without a threshold do not match), with
    the verifier, its look-alike space and screen cutoff."""
    rows = connection.execute(
        "SELECT evidence, threshold, coalesce(mirror_aware, false) FROM match_thresholds "
        "WHERE threshold IS NOT NULL AND evidence NOT IN ('combined', ?)",
        [VERIFIED_EVIDENCE],
    ).fetchall()
    chosen = {evidence: threshold for evidence, threshold, _ in rows}
    cosine = chosen.pop(EMBEDDING_EVIDENCE, None)
    verifier = space = cutoff = share = None
    if "pair_verifier" in table_names(connection):
        row = connection.execute("SELECT model, look_alike_space, screen_cutoff FROM pair_verifier").fetchone()
        if row is not None:
            verifier = PairScorer.from_json(row[0])
            space = LookAlikeSpace.from_bytes(row[1]) if row[1] is not None else None
            cutoff = row[2]
            first_join = read_first_join(connection)
            if first_join is not None:
                share = first_join["copy_share"]
                if first_join["operating_threshold"] is not None:
                    verifier = verifier.with_threshold(first_join["operating_threshold"])
    targets = None
    if "target_precision" in column_names(connection, "match_thresholds"):
        targets = connection.execute(
            "SELECT target_precision FROM match_thresholds WHERE evidence = ? AND target_precision IS NOT NULL",
            [VERIFIED_EVIDENCE],
        ).fetchone()
    return MatchThresholds(
        hamming={name: int(value) for name, value in chosen.items()},
        cosine=cosine,
        mirrored=frozenset(evidence for evidence, _, mirror in rows if mirror and evidence != EMBEDDING_EVIDENCE),
        verifier=verifier,
        look_alikes=space,
        screen_cutoff=cutoff,
        copy_share=share,
        **({"target_precision": targets[0]} if targets else {}),
    )


def calibration_id(connection: duckdb.DuckDBPyConnection) -> str:
    """A digest of what the join applies (thresholds, mirroring, verifier, look-alike space), not
    of the screen cutoff the first join adds to it."""
    digest = hashlib.sha256()
    rows = connection.execute(
        "SELECT evidence, threshold, mirror_aware FROM match_thresholds ORDER BY evidence"
    ).fetchall()
    digest.update(json.dumps(rows, default=str).encode())
    if "pair_verifier" in table_names(connection):
        for model, space in connection.execute("SELECT model, look_alike_space FROM pair_verifier").fetchall():
            digest.update(model.encode())
            digest.update(space or b"")
    return digest.hexdigest()[:16]


def record_calibration(connection: duckdb.DuckDBPyConnection, source: str, fingerprint: str, images: int) -> None:
    row = (calibration_id(connection), source, fingerprint, images, datetime.datetime.now())
    replace_table(connection, "calibration", pl.DataFrame([row], schema=CALIBRATION_SCHEMA, orient="row"))


def read_calibration(connection: duckdb.DuckDBPyConnection) -> dict[str, object] | None:
    if "calibration" not in table_names(connection):
        return None
    frame = read_table(connection, "calibration")
    return frame.row(0, named=True) if frame.height else None


def write_join_state(connection: duckdb.DuckDBPyConnection, state: JoinState, calibration: str) -> None:
    """The join's tables (inside the caller's transaction): its own pairs (``joined_pairs``, before
    a person's marks are applied), the look-alike lists with their vectors, the joined images, and
    what they were computed under."""
    replace_table(connection, "joined_pairs", state.pairs)
    replace_table(connection, "joined_images", pl.DataFrame({"image_id": state.joined}, schema={"image_id": pl.Int64}))
    look_alikes = pl.DataFrame(
        {
            "image_id": state.look_alike_ids,
            "neighbours": state.neighbours,
            "similarities": state.similarities,
            "vector": state.vectors,
        },
        schema={
            "image_id": pl.Int64,
            "neighbours": pl.Array(pl.Int64, state.neighbours.shape[1]),
            "similarities": pl.Array(pl.Int32, state.similarities.shape[1]),
            "vector": pl.Array(pl.Int16, state.vectors.shape[1]),
        },
    )
    replace_table(connection, "look_alikes", look_alikes)
    row = (calibration, state.screen_cutoff, datetime.datetime.now())
    replace_table(
        connection,
        "join_state",
        pl.DataFrame(
            [row],
            schema={"calibration_id": pl.String, "screen_cutoff": pl.Float64, "joined_at": pl.Datetime("us")},
            orient="row",
        ),
    )


def read_join_state(connection: duckdb.DuckDBPyConnection, calibration: str) -> JoinState | None:
    """What the last join left, if it ran under ``calibration`` (else None: join from scratch)."""
    if "join_state" not in table_names(connection):
        return None
    row = connection.execute("SELECT calibration_id, screen_cutoff FROM join_state").fetchone()
    if row is None or row[0] != calibration:
        return None
    lists = read_table(connection, "look_alikes")
    # stores written before marks existed kept the join's pairs in similar_pairs
    pairs_table = "joined_pairs" if "joined_pairs" in table_names(connection) else "similar_pairs"
    return JoinState(
        joined=read_table(connection, "joined_images")["image_id"].to_numpy(),
        pairs=read_table(connection, pairs_table),
        look_alike_ids=lists["image_id"].to_numpy(),
        neighbours=lists["neighbours"].to_numpy().astype(np.int64),
        similarities=lists["similarities"].to_numpy().astype(np.int32),
        vectors=lists["vector"].to_numpy().astype(np.int16),
        screen_cutoff=row[1],
    )


def read_pair_overrides(connection: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """The marks people gave (``overrides.STORED_SCHEMA``), none before the first."""
    if "pair_overrides" not in table_names(connection):
        return pl.DataFrame(schema=STORED_SCHEMA)
    return read_table(connection, "pair_overrides")


CALIBRATION_TABLES = ("match_thresholds", "pair_verifier")


def copy_calibration(connection: duckdb.DuckDBPyConnection, other: str) -> None:
    """Apply another database's thresholds and pair verifier (with its look-alike space and screen
    cutoff) here, replacing this database's own (inside the caller's transaction)."""
    with closing(connect(other, read_only=True)) as source:
        present = table_names(source)
        if "match_thresholds" not in present:
            raise ValueError(f"{other} holds no thresholds (table match_thresholds): run the pipeline on it first")
        tables = {
            table: read_table(source, table) if table in present else pl.DataFrame(schema=VERIFIER_SCHEMA)
            for table in CALIBRATION_TABLES
        }
    for table, frame in tables.items():
        replace_table(connection, table, frame)
