"""Drops written as shards, merged into the catalog, and read back as the live images' arrays."""

from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from dedup_pipeline.lib.features.extraction import FAILURE_SCHEMA, MANIFEST_SCHEMA, ExtractionResult
from dedup_pipeline.lib.storage.catalog import merge_drops
from dedup_pipeline.lib.storage.features import LiveImages
from dedup_pipeline.lib.storage.raw_columns import mapped_column
from dedup_pipeline.lib.storage.shards import shard_tables, stable_image_id
from dedup_pipeline.lib.storage.store import EVENT_SCHEMA, Store


def extracted(paths: list[str], seed: int, embeddings: bool = True) -> ExtractionResult:
    rng = np.random.default_rng(seed)
    count = len(paths)
    manifest = pl.DataFrame(
        {
            "image_id": range(count),
            "path": paths,
            "split": ["train"] * count,
            "label": [None] * count,
            "bytes": [1] * count,
            "width": [32] * count,
            "height": [32] * count,
            "format": ["PNG"] * count,
            "mode": ["RGB"] * count,
            "frames": [1] * count,
            "content_sha256": [f"{seed}-{path}" for path in paths],
            "pixel_sha256": [f"{seed}-{path}" for path in paths],
            "notes": [None] * count,
        },
        schema=MANIFEST_SCHEMA,
    )
    return ExtractionResult(
        manifest=manifest,
        failures=pl.DataFrame(schema=FAILURE_SCHEMA),
        hashes={
            "phash": rng.integers(0, 2**64, size=(count, 1), dtype=np.uint64),
            "whash": rng.integers(0, 2**64, size=(count, 4), dtype=np.uint64),
        },
        thumbnails=rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8),
        view_hashes=rng.integers(0, 2**64, size=(count, 17), dtype=np.uint64),
        embeddings=rng.normal(size=(count, 6)).astype(np.float32) if embeddings else None,
    )


def deliver(store: Store, name: str, paths: list[str], seed: int, deleted: list[str] = ()) -> ExtractionResult:
    events = pl.DataFrame(
        [(path, "image", "train", None, f"/{path}", 1, 1, "added", None) for path in paths]
        + [(path, "image", "train", None, f"/{path}", 1, 1, "deleted", None) for path in deleted],
        schema=EVENT_SCHEMA,
        orient="row",
    )
    drop = store.register(name, events)
    result = extracted(paths, seed)
    store.write_shard(
        drop,
        shard_tables(drop.sequence, result, pl.DataFrame(schema={**FAILURE_SCHEMA, "kind": pl.String}), 8, "m", 64),
    )
    return result


def test_live_arrays_come_back_in_path_order_across_drops_and_retirements(tmp_path: Path) -> None:
    store, connection = Store(tmp_path / "db.store"), duckdb.connect()
    first = deliver(store, "initial", ["b", "d", "c"], seed=1)
    merge_drops(connection, store)
    second = deliver(store, "more", ["a", "c"], seed=2, deleted=["d"])  # c rewritten in place, d deleted
    report = merge_drops(connection, store)
    assert report.retired == 2 and report.live_images == 3
    live = LiveImages.read(connection, store)
    assert live.manifest["path"].to_list() == ["a", "b", "c"]
    assert live.image_ids[2] == stable_image_id("c", "2-c")  # the rewritten version
    expected_rows = [(second, 0), (first, 0), (second, 1)]  # (result, row) of a, b, c
    thumbnails, embeddings, views = live.thumbnails(), live.embeddings(), live.view_hashes()
    hashes = live.hashes(["phash", "whash"])
    for position, (result, row) in enumerate(expected_rows):
        assert np.array_equal(thumbnails[position], result.thumbnails[row])
        assert np.array_equal(embeddings[position], result.embeddings[row])
        assert np.array_equal(views[position], result.view_hashes[row])
        assert np.array_equal(hashes["whash"][position], result.hashes["whash"][row])
        assert hashes["phash"][position, 0] == result.hashes["phash"][row, 0]
    retired = dict(connection.execute("SELECT path, reason FROM retired_images").fetchall())
    assert retired == {"c": "changed: new content", "d": "deleted"}
    # the store's raw columns are read in place
    for drop in store.drops():
        assert mapped_column(store.shard_file(drop, "embeddings"), "embedding") is not None
        assert mapped_column(store.shard_file(drop, "thumbnails"), "thumbnail") is not None
    # the DuckDB views say the same
    assert connection.execute("SELECT count(*) FROM image_thumbnails").fetchone()[0] == 3
    blob = connection.execute("SELECT embedding FROM image_embeddings WHERE path = 'b'").fetchone()[0]
    assert np.array_equal(np.frombuffer(blob, "<f4"), first.embeddings[0])


def test_without_embeddings_there_are_none(tmp_path: Path) -> None:
    store, connection = Store(tmp_path / "db.store"), duckdb.connect()
    drop = store.register(
        "initial",
        pl.DataFrame([("a", "image", "train", None, "/a", 1, 1, "added", None)], schema=EVENT_SCHEMA, orient="row"),
    )
    result = extracted(["a"], 1, embeddings=False)
    store.write_shard(
        drop, shard_tables(1, result, pl.DataFrame(schema={**FAILURE_SCHEMA, "kind": pl.String}), 8, "none", 0)
    )
    merge_drops(connection, store)
    live = LiveImages.read(connection, store)
    assert live.embeddings() is None and live.thumbnails().shape == (1, 32, 32, 3)
    with pytest.raises(ValueError, match="lack rows"):
        LiveImages(store, live.manifest.with_columns(pl.lit(99, dtype=pl.Int64).alias("image_id"))).thumbnails()
