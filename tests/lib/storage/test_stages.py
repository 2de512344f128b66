import os
from pathlib import Path

import duckdb

from dedup_pipeline.lib.inputs.sources import ImageSource
from dedup_pipeline.lib.storage.stages import (
    FIRST_STAGE,
    config_fingerprint,
    dataset_signature,
    done_stages,
    record_stage,
    stages_to_run,
)


def test_a_stage_is_done_only_for_the_same_settings_and_data(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "db.duckdb")) as connection:
        assert done_stages(connection, "c1", "d1") == set()
        record_stage(connection, FIRST_STAGE, "c1", "d1")
        record_stage(connection, "similar_pairs", "c1")  # carries the first stage's data signature
        record_stage(connection, "similar_pairs", "c1")  # recorded again: still one row
        assert done_stages(connection, "c1", "d1") == {FIRST_STAGE, "similar_pairs"}
        assert done_stages(connection, "c2", "d1") == set() and done_stages(connection, "c1", "d2") == set()
        assert connection.execute("SELECT count(*) FROM pipeline_stages").fetchone()[0] == 2


def test_stages_rerun_from_the_first_unfinished_one() -> None:
    order = ["a", "b", "c", "d"]
    assert stages_to_run(order, {"a", "b", "c", "d"}) == []
    assert stages_to_run(order, {"a", "c", "d"}) == ["b", "c", "d"]
    assert stages_to_run(order, set()) == order


def test_dataset_signature_follows_files_splits_and_labels(tmp_path: Path) -> None:
    image = tmp_path / "a.jpg"
    image.write_bytes(b"one")
    sources = [ImageSource("a.jpg", "train", "cat", image)]
    signature = dataset_signature(sources)
    assert dataset_signature(list(reversed(sources))) == signature
    assert dataset_signature([ImageSource("a.jpg", "test", "cat", image)]) != signature
    image.write_bytes(b"two!")
    os.utime(image, ns=(1, 1))
    assert dataset_signature(sources) != signature
    assert config_fingerprint({"a": 1, "b": [2]}) == config_fingerprint({"b": [2], "a": 1})
