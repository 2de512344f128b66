"""Settings are checked before any work starts."""

from pathlib import Path

import dagster as dg
import pytest

from dedup_pipeline.defs.resources import DedupConfig


def test_usable_settings_have_no_problems() -> None:
    assert DedupConfig(data="data").problems() == []
    assert DedupConfig(data="data", hamming_thresholds={"phash": 10}, cosine_threshold=0.9).problems() == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"hamming_thresholds": {"phash": -3}}, "hamming threshold of phash must be between 0 and 64"),
        ({"hamming_thresholds": {"phash": 65}}, "between 0 and 64"),
        ({"hamming_thresholds": {"nohash": 3}}, "not computed: ['nohash']"),
        ({"hash_algorithms": ["phash", "bogus"]}, "unknown hash algorithm(s) ['bogus']"),
        ({"cosine_threshold": 1.5}, "cosine_threshold must be between -1.0 and 1.0"),
        ({"target_precision": 1.5}, "target_precision must be above 0 and below 1"),
        ({"max_leaked_fraction": -1.0}, "max_leaked_fraction must be between 0.0 and 1.0"),
        ({"calibration_images": 0}, "calibration_images must be at least 1"),
        ({"embedding_image_size": 8}, "embedding_image_size must be at least 16"),
        ({"workers": -2}, "workers must be at least 0"),
        ({"embedding_model": "nosuch"}, "unknown embedding model 'nosuch'"),
        ({"embedding_model": "no_such_package.models:build"}, "no module 'no_such_package.models'"),
        ({"overrides_file": "/no/such/marks.csv"}, "/no/such/marks.csv: cannot read the marks"),
    ],
)
def test_each_unusable_setting_is_named(settings: dict, message: str) -> None:
    problems = DedupConfig(data="data", **settings).problems()
    assert any(message in problem for problem in problems), problems


def test_an_input_size_without_a_model_is_ignored() -> None:
    settings = DedupConfig(data="data", embedding_model="none", embedding_image_size=64).extraction_settings(64)
    assert settings.embedding_size is None and settings.embedding_model is None


def test_a_dagster_run_with_unusable_settings_fails_before_any_work(tmp_path: Path) -> None:
    ran = []

    @dg.asset
    def probe(dedup: DedupConfig) -> None:
        ran.append(dedup.target_precision)

    result = dg.materialize(
        [probe], resources={"dedup": DedupConfig(data=str(tmp_path), target_precision=2.0)}, raise_on_error=False
    )
    assert not result.success and ran == []
    failure = next(event for event in result.all_events if event.is_failure)
    assert "target_precision must be above 0 and below 1" in str(failure.event_specific_data.error)
