import polars as pl
import pytest

from dedup_pipeline.evaluation.blind_judging import (
    BANDS,
    CONTROL_DEEP,
    CONTROL_SAME_SHOT,
    CONTROL_SIMILAR,
    CONTROLS,
    DEEP_FROM,
    UNLISTED,
    control_rates,
    judged_share,
    sample_pairs,
    unlisted_estimate,
)


def _ranking(size: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "test_path": [f"test/{rank:05d}.jpg" for rank in range(size)],
            "train_path": [f"train/{rank:05d}.jpg" for rank in range(size)],
            "score": [1 - rank / size for rank in range(size)],
            "rank": list(range(size)),
        }
    )


def _cifair(listed_ranks: range) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "test_path": [f"test/{rank:05d}.jpg" for rank in listed_ranks],
            "other_path": [f"train/listed-{rank:05d}.jpg" for rank in listed_ranks],
            "judgment": [rank % 3 for rank in listed_ranks],
        }
    )


def test_sample_pairs_draws_unlisted_images_per_band_and_controls_blindly_numbered() -> None:
    ranking, cifair = _ranking(5000), _cifair(range(0, 400, 2))

    pairs = sample_pairs(ranking, cifair, seed=1)

    listed = set(cifair["test_path"])
    unlisted = pairs.filter(pl.col("group") == UNLISTED)
    assert not set(unlisted["test_path"]) & listed
    for band in BANDS:
        members = unlisted.filter(pl.col("band") == band.name)
        ranks = [int(path[5:10]) for path in members["test_path"]]
        assert len(ranks) == band.sampled and all(band.start <= rank < band.stop for rank in ranks)
        expected = band.stop - band.start - (len(range(band.start, min(band.stop, 400), 2)) if band.start < 400 else 0)
        assert members["band_unlisted"].unique().to_list() == [expected]
    same_shot = pairs.filter(pl.col("group") == CONTROL_SAME_SHOT)
    assert same_shot.height == CONTROLS[CONTROL_SAME_SHOT]
    assert all(path.startswith("train/listed-") for path in same_shot["train_path"])
    assert pairs.filter(pl.col("group") == CONTROL_SIMILAR).height == CONTROLS[CONTROL_SIMILAR]
    deep = pairs.filter(pl.col("group") == CONTROL_DEEP)
    assert deep.height == CONTROLS[CONTROL_DEEP] and all(int(p[5:10]) >= DEEP_FROM for p in deep["test_path"])
    assert sorted(pairs["pair"]) == list(range(1, pairs.height + 1))
    # Shuffled: the groups are interleaved, not in blocks.
    assert pairs["group"].head(20).n_unique() > 1


def test_unlisted_estimate_scales_each_band_by_the_judges_average_same_shot_share() -> None:
    judgments = pl.DataFrame(
        {
            "group": [UNLISTED] * 4 + [CONTROL_SAME_SHOT],
            "band": ["200-400", "200-400", "0-200", "0-200", None],
            "band_unlisted": [100, 100, 40, 40, 249],
            "judge_a": ["near", "similar", "exact", "different", "near"],
            "judge_b": ["near", "near", "similar", "different", "near"],
        }
    )

    estimate = unlisted_estimate(judgments)

    assert estimate["band"].to_list() == ["0-200", "200-400"]
    assert estimate["share"].to_list() == pytest.approx([0.25, 0.75])
    assert estimate["estimated same shot"].to_list() == [10, 75]


def test_control_rates_count_same_shot_verdicts_per_judge_and_jointly() -> None:
    judgments = pl.DataFrame(
        {
            "group": [CONTROL_SAME_SHOT] * 2 + [CONTROL_SIMILAR] * 2,
            "judge_a": ["near", "exact", "near", "different"],
            "judge_b": ["near", "similar", "similar", "different"],
        }
    )

    rates = control_rates(judgments)

    assert rates.rows() == [(CONTROL_SAME_SHOT, 2, 1.0, 0.5, 0.5), (CONTROL_SIMILAR, 2, 0.5, 0.0, 0.0)]


def test_judged_share_is_the_judges_same_shot_share_of_the_judged_flags() -> None:
    judgments = pl.DataFrame(
        {
            "test_path": ["t1", "t2", "t3"],
            "train_path": ["r1", "r2", "r3"],
            "group": [UNLISTED] * 3,
            "judge_a": ["near", "different", "near"],
            "judge_b": ["exact", "similar", "different"],
        }
    )
    flagged = pl.DataFrame({"test_path": ["t1", "t2", "t2", "t9"], "train_path": ["r1", "r2", "r2", "r9"]})

    assert judged_share(flagged, judgments) == (2, 0.5)
    assert judged_share(flagged.head(0), judgments) == (0, None)
