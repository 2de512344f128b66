import duckdb
import numpy as np
import polars as pl
import pytest

from dedup_pipeline.lib.search.look_alikes import fit_space
from dedup_pipeline.lib.search.similar_pairs import JoinState
from dedup_pipeline.lib.storage.database import (
    append_rows,
    calibration_id,
    quoted,
    read_join_state,
    read_match_thresholds,
    read_table,
    transaction,
    write_first_join,
    write_join_state,
    write_table,
    write_verifier,
)
from dedup_pipeline.lib.verification.base_rate import ExpectedPrecision
from dedup_pipeline.lib.verification.pair_scorer import PairScorer


def test_a_failed_transaction_leaves_nothing_behind() -> None:
    connection = duckdb.connect()
    write_table(connection, "leak_report", pl.DataFrame({"x": [1, 2]}))
    with pytest.raises(RuntimeError), transaction(connection):
        write_table_inside = pl.DataFrame({"x": [3]})
        connection.register("_x", write_table_inside.to_arrow())
        connection.execute("CREATE OR REPLACE TABLE leak_report AS SELECT * FROM _x")
        append_rows(connection, "retired_images", pl.DataFrame({"y": [1]}))
        raise RuntimeError("killed half way")
    assert read_table(connection, "leak_report")["x"].to_list() == [1, 2]
    tables = {name for (name,) in connection.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    assert "retired_images" not in tables


def test_only_the_packages_own_table_names_and_orderings_reach_sql_text() -> None:
    connection = duckdb.connect()
    hostile = 'leak_report"; DROP TABLE similar_pairs; --'
    with pytest.raises(ValueError, match="not a table of this package"):
        write_table(connection, hostile, pl.DataFrame({"x": [1]}))
    write_table(connection, "leak_report", pl.DataFrame({"x": [1]}))
    with pytest.raises(ValueError, match="not an ordering of this package"):
        read_table(connection, "leak_report", order_by="x; DROP TABLE leak_report")
    assert read_table(connection, "leak_report")["x"].to_list() == [1]


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
    assert read_match_thresholds(connection).copy_share is None
    expected = ExpectedPrecision(candidates=100, flagged=5, copy_share=0.04, precision=0.9)
    write_first_join(connection, 0.25, 0.8, expected)
    thresholds = read_match_thresholds(connection)
    assert thresholds.screen_cutoff == 0.25 and thresholds.copy_share == 0.04
    assert thresholds.verifier.threshold == 0.8  # the operating threshold the first join chose
    stored = connection.execute("SELECT expected_precision FROM pair_verifier").fetchone()
    assert stored == (0.9,)
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
    # the join's own pairs, not the marked ones, are what the next join starts from
    write_table(connection, "similar_pairs", pl.DataFrame({"image_id_a": [5], "image_id_b": [9]}))
    assert read_join_state(connection, "calibration-a").pairs.equals(state.pairs)
    # a store written before marks existed kept the join's pairs in similar_pairs
    connection.execute("ALTER TABLE joined_pairs RENAME TO old_pairs")
    assert read_join_state(connection, "calibration-a").pairs["image_id_a"].to_list() == [5]
