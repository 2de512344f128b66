import duckdb
import numpy as np
import polars as pl

from dedup_pipeline.lib.storage.database import (
    embeddings_table,
    hashes_table,
    read_embeddings,
    read_hashes,
    read_match_thresholds,
    read_table,
    read_thumbnails,
    read_view_hashes,
    thumbnails_table,
    write_table,
)

MANIFEST = pl.DataFrame({"image_id": [0, 1, 2], "path": ["a", "b", "c"]})


def test_hashes_round_trip_as_bigint_and_as_word_lists() -> None:
    connection = duckdb.connect()
    one_word = np.array([[0], [2**63 + 5], [2**64 - 1]], dtype=np.uint64)
    four_words = np.arange(12, dtype=np.uint64).reshape(3, 4) * np.uint64(2**62)
    write_table(connection, "image_hashes", hashes_table(MANIFEST, {"phash": one_word, "whash": four_words}, 8))
    types = dict(
        connection.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'image_hashes'"
        ).fetchall()
    )
    assert types["phash"] == "BIGINT" and types["whash"] == "BIGINT[]"
    # The stored BIGINT is the imagehash integer in two's complement.
    assert connection.execute("SELECT phash FROM image_hashes WHERE path = 'b'").fetchone()[0] == 2**63 + 5 - 2**64
    back = read_hashes(connection, ["phash", "whash"])
    assert (back["phash"] == one_word).all() and (back["whash"] == four_words).all()


def test_embeddings_round_trip_as_fixed_size_arrays() -> None:
    connection = duckdb.connect()
    vectors = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    write_table(connection, "image_embeddings", embeddings_table(MANIFEST, vectors, "m", 64))
    assert "FLOAT[5]" in connection.execute("SELECT typeof(embedding) FROM image_embeddings LIMIT 1").fetchone()[0]
    assert np.array_equal(read_embeddings(connection), vectors)
    write_table(connection, "image_embeddings", embeddings_table(MANIFEST, None, "none", 0))
    assert read_embeddings(connection) is None


def test_thumbnails_and_view_hashes_round_trip_in_image_id_order() -> None:
    connection = duckdb.connect()
    rng = np.random.default_rng(0)
    thumbnails = rng.integers(0, 256, size=(3, 4, 4, 3), dtype=np.uint8)
    view_hashes = rng.integers(0, 2**64, size=(3, 17), dtype=np.uint64)
    write_table(connection, "image_thumbnails", thumbnails_table(MANIFEST, thumbnails, view_hashes))
    assert np.array_equal(read_thumbnails(connection), thumbnails)
    assert np.array_equal(read_view_hashes(connection), view_hashes)
    # rows stored out of order come back by image_id
    shuffled = connection.execute("SELECT * FROM image_thumbnails ORDER BY image_id DESC").to_arrow_table()
    write_table(connection, "image_thumbnails", shuffled)
    assert np.array_equal(read_thumbnails(connection), thumbnails)
    assert np.array_equal(read_view_hashes(connection), view_hashes)
    # thumbnails stored by a version without view hashes: computed from the thumbnails instead
    write_table(connection, "image_thumbnails", shuffled.drop_columns(["view_phashes"]))
    assert read_view_hashes(connection) is None


def test_write_table_replaces() -> None:
    connection = duckdb.connect()
    write_table(connection, "t", pl.DataFrame({"x": [1, 2]}))
    write_table(connection, "t", pl.DataFrame({"x": [3]}))
    assert read_table(connection, "t")["x"].to_list() == [3]


def test_match_thresholds_are_read_back_for_the_join() -> None:
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
    assert thresholds.mirrored == {"phash"}
