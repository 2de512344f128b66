from pathlib import Path

import yaml

from dedup_pipeline.defs import defs
from dedup_pipeline.defs.partitions import DROPS
from dedup_pipeline.defs.resources import DUCKDB_POOL

REPO = Path(__file__).resolve().parents[2]


def test_definitions_load_with_descriptions_checks_and_the_duckdb_pool() -> None:
    repository = defs.get_repository_def()
    assets = repository.asset_graph
    keys = {key.to_user_string() for key in assets.get_all_asset_keys()}
    assert keys == {
        "image_catalog",
        "image_manifest",
        "image_hashes",
        "image_thumbnails",
        "image_embeddings",
        "match_thresholds",
        "similar_pairs",
        "duplicate_clusters",
        "leak_report",
        "label_conflicts",
        "dedup_manifest",
        "html_report",
    }
    per_drop = {"image_manifest", "image_hashes", "image_thumbnails", "image_embeddings"}
    for key in assets.get_all_asset_keys():
        node = assets.get(key)
        assert node.description, key
        if key.to_user_string() in per_drop:  # extraction writes Parquet files: drops run side by side
            assert node.partitions_def == DROPS and not node.pools, key
        else:  # everything that connects to the database runs one step at a time
            assert node.partitions_def is None and node.pools == {DUCKDB_POOL}, key
    groups = {key.to_user_string(): assets.get(key).group_name for key in assets.get_all_asset_keys()}
    assert {group for key, group in groups.items() if key in per_drop} == {"extraction"}
    assert [groups[key] for key in ("image_catalog", "match_thresholds", "similar_pairs", "html_report")] == [
        "catalog",
        "calibration",
        "matching",
        "reports",
    ]
    checks = {key.name for key in assets.asset_check_keys}
    assert checks == {"decode_failure_rate", "leak_budget", "no_leaks_among_kept"}
    assert [sensor.name for sensor in repository.sensor_defs] == ["drop_sensor"]


def test_instance_limits_every_pool_to_one_step() -> None:
    config = yaml.safe_load((REPO / "dagster_home" / "dagster.yaml").read_text())
    assert config["concurrency"]["pools"]["default_limit"] == 1
