import duckdb
import numpy as np
import polars as pl
import pytest

from dedup_pipeline.lib.search.look_alikes import fit_space
from dedup_pipeline.lib.search.similar_pairs import JoinState
from dedup_pipeline.lib.storage.database import (
    append_rows,
    calibration_id,
    create_image_views,
    quoted,
    read_embeddings,
    read_hashes,
    read_join_state,
    read_match_thresholds,
    read_table,
    read_thumbnails,
    read_view_hashes,
    transaction,
    write_join_state,
    write_screen_cutoff,
    write_table,
    write_verifier,
)
from dedup_pipeline.lib.storage.shards import embeddings_table, hashes_table, thumbnails_table
from dedup_pipeline.lib.verification.pair_scorer import PairScorer

MANIFEST = pl.DataFrame({"image_id": [30, 10, 20], "drop_seq": [1, 1, 1], "path": ["a", "b", "c"]})
LIVE = np.array([30, 10, 20])  # the manifest's (path) order, which reads follow


def stored(connection: duckdb.DuckDBPyConnection, tmp_path, tables: dict[str, object]) -> None:
    """Write shard tables as Parquet files and put the per-image views over them."""
    defaults = {
        "manifest": MANIFEST,
        "failures": pl.DataFrame(
            {"path": ["x"], "kind": ["problem"], "split": [None], "label": [None], "reason": ["r"], "drop_seq": [1]}
        ),
        "hashes": hashes_table(MANIFEST, {"phash": np.zeros((3, 1), np.uint64)}, 8),
        "thumbnails": thumbnails_table(MANIFEST, np.zeros((3, 4, 4, 3), np.uint8), None),
        "embeddings": embeddings_table(MANIFEST, None, "none", 0),
    }
    files = {}
    for name, default in defaults.items():
        frame = tables.get(name, default)
        path = tmp_path / f"{name}.parquet"
        (frame if isinstance(frame, pl.DataFrame) else pl.from_arrow(frame)).write_parquet(path)
        files[name] = [str(path)]
    catalog = pl.DataFrame(
        {
            "path": ["a", "b", "c", "x"],
            "kind": ["image"] * 3 + ["problem"],
            "drop_seq": [1] * 4,
            "image_id": [30, 10, 20, None],
        }
    )
    write_table(connection, "image_catalog", catalog)
    create_image_views(connection, files)


def test_hashes_round_trip_as_bigint_and_as_word_lists_in_the_order_asked(tmp_path) -> None:
    connection = duckdb.connect()
    one_word = np.array([[0], [2**63 + 5], [2**64 - 1]], dtype=np.uint64)
    four_words = np.arange(12, dtype=np.uint64).reshape(3, 4) * np.uint64(2**62)
    stored(connection, tmp_path, {"hashes": hashes_table(MANIFEST, {"phash": one_word, "whash": four_words}, 8)})
    types = dict(connection.execute("SELECT column_name, column_type FROM (DESCRIBE image_hashes)").fetchall())
    assert types["phash"] == "BIGINT" and types["whash"] == "BIGINT[]"
    # The stored BIGINT is the imagehash integer in two's complement.
    assert connection.execute("SELECT phash FROM image_hashes WHERE path = 'b'").fetchone()[0] == 2**63 + 5 - 2**64
    back = read_hashes(connection, ["phash", "whash"], LIVE)
    assert (back["phash"] == one_word).all() and (back["whash"] == four_words).all()
    reordered = read_hashes(connection, ["phash"], np.array([20, 30, 10]))
    assert (reordered["phash"][:, 0] == one_word[[2, 0, 1], 0]).all()


def test_embeddings_thumbnails_and_view_hashes_round_trip(tmp_path) -> None:
    connection = duckdb.connect()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 5)).astype(np.float32)
    thumbnails = rng.integers(0, 256, size=(3, 4, 4, 3), dtype=np.uint8)
    view_hashes = rng.integers(0, 2**64, size=(3, 17), dtype=np.uint64)
    stored(
        connection,
        tmp_path,
        {
            "embeddings": embeddings_table(MANIFEST, vectors, "m", 64),
            "thumbnails": thumbnails_table(MANIFEST, thumbnails, view_hashes),
        },
    )
    assert np.array_equal(read_embeddings(connection, LIVE), vectors)
    assert np.array_equal(read_thumbnails(connection, LIVE), thumbnails)
    assert np.array_equal(read_view_hashes(connection, LIVE), view_hashes)
    assert read_table(connection, "image_failures")["reason"].to_list() == ["r"]
    with pytest.raises(ValueError, match="lacks rows"):
        read_thumbnails(connection, np.array([30, 99]))


def test_embeddings_off_and_thumbnails_without_view_hashes(tmp_path) -> None:
    connection = duckdb.connect()
    thumbnails = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    stored(
        connection,
        tmp_path,
        {
            "embeddings": embeddings_table(MANIFEST, None, "none", 0),
            "thumbnails": thumbnails_table(MANIFEST, thumbnails, None),
        },
    )
    assert read_embeddings(connection, LIVE) is None
    assert read_view_hashes(connection, LIVE) is None  # computed from the thumbnails instead


def test_a_failed_transaction_leaves_nothing_behind() -> None:
    connection = duckdb.connect()
    write_table(connection, "t", pl.DataFrame({"x": [1, 2]}))
    with pytest.raises(RuntimeError), transaction(connection):
        write_table_inside = pl.DataFrame({"x": [3]})
        connection.register("_x", write_table_inside.to_arrow())
        connection.execute("CREATE OR REPLACE TABLE t AS SELECT * FROM _x")
        append_rows(connection, "u", pl.DataFrame({"y": [1]}))
        raise RuntimeError("killed half way")
    assert read_table(connection, "t")["x"].to_list() == [1, 2]
    assert "u" not in {name for (name,) in connection.execute("SELECT table_name FROM duckdb_tables()").fetchall()}


def test_file_names_are_quoted_for_view_definitions() -> None:
    assert quoted("it's.parquet") == "'it''s.parquet'"


def test_match_thresholds_are_read_back_with_the_verifier_its_space_and_cutoff() -> None:
    connection = duckdb.connect()
    table = pl.DataFrame(
        {
            "evidence": ["phash", "dhash", "ahash", "embedding", "combined"],
            "threshold": [9.0, None, 3.0, 0.8, None],
            "mirror_aware": [True, True, False, None, None],
        }
    )
    write_table(connection, "match_thresholds", table)
    thresholds = read_match_thresholds(connection)
    assert thresholds.hamming == {"phash": 9, "ahash": 3} and thresholds.cosine == 0.8
    assert thresholds.mirrored == {"phash"} and thresholds.verifier is None
    before = calibration_id(connection)
    scorer = PairScorer(("a",), np.zeros(1), np.ones(1), np.eye(1, dtype=np.int64), np.ones(1), 0.0, 0.7)
    space = fit_space(np.random.default_rng(1).normal(size=(100, 80)))
    write_verifier(connection, scorer, space)
    with_verifier = calibration_id(connection)
    write_screen_cutoff(connection, 0.25)
    thresholds = read_match_thresholds(connection)
    assert thresholds.verifier.threshold == 0.7 and thresholds.screen_cutoff == 0.25
    assert np.array_equal(thresholds.look_alikes.components, space.components)
    assert before != with_verifier == calibration_id(connection)  # the cutoff the first join sets is not part of it


def test_join_state_round_trips_under_its_calibration_only() -> None:
    connection = duckdb.connect()
    state = JoinState(
        joined=np.array([3, 5, 9]),
        pairs=pl.DataFrame({"image_id_a": [3], "image_id_b": [9], "evidence": ["pixels"]}),
        look_alike_ids=np.array([3, 5, 9]),
        neighbours=np.array([[5, 9], [3, -1], [3, 5]]),
        similarities=np.array([[7, 6], [7, -(2**31)], [6, 5]], dtype=np.int32),
        vectors=np.arange(6, dtype=np.int16).reshape(3, 2),
        screen_cutoff=0.4,
    )
    with transaction(connection):
        write_join_state(connection, state, "calibration-a")
    back = read_join_state(connection, "calibration-a")
    assert back.pairs.equals(state.pairs) and back.screen_cutoff == 0.4
    for name in ("joined", "look_alike_ids", "neighbours", "similarities", "vectors"):
        assert np.array_equal(getattr(back, name), getattr(state, name)), name
    assert read_join_state(connection, "calibration-b") is None
