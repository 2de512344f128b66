from pathlib import Path

import numpy as np
import pytest

from dedup_pipeline.benchmarks.cases import PLANTED_FRACTION, hamming_synthetic, planted_hashes
from dedup_pipeline.benchmarks.measure import fitted_exponent, isolated
from dedup_pipeline.benchmarks.pipeline import cifar_subset


def test_planted_hashes_hold_copies_within_eight_bits() -> None:
    words = planted_hashes(20_000, seed=3)[:, 0]
    distances = np.bitwise_count(words[:, None] ^ words[None, :5000]).astype(int)  # a block of columns
    np.fill_diagonal(distances, 99)
    close = (distances <= 8).sum()
    # about 1% of the images are planted copies; a quarter of the sources fall in the first 5,000 columns
    assert 0.5 * PLANTED_FRACTION * 5000 < close < 4 * PLANTED_FRACTION * 5000


def test_isolated_runs_the_case_in_fresh_processes_and_takes_medians() -> None:
    measured = isolated(hamming_synthetic, 2_000, 8, "multi-index", repeats=2)
    assert measured["pairs"] >= 2_000 * PLANTED_FRACTION * 0.9
    assert len(measured.all_seconds) == 2 and measured.peak_rss_mb > 10


def test_fitted_exponent() -> None:
    sizes = [1e4, 1e5, 1e6]
    assert fitted_exponent(sizes, [2e-6 * n**1.5 for n in sizes]) == pytest.approx(1.5)


def test_cifar_subset_keeps_the_share_of_every_folder(tmp_path: Path) -> None:
    cifar = tmp_path / "cifar"
    for split, count in (("train", 50), ("test", 10)):
        for label in ("cat", "dog"):
            folder = cifar / split / label
            folder.mkdir(parents=True)
            for k in range(count):
                (folder / f"{k:04d}.jpg").write_bytes(b"x")
    subset = cifar_subset(cifar, tmp_path / "subset", 60)
    counts = {str(p.relative_to(subset)): len(list(p.iterdir())) for p in subset.glob("*/*")}
    assert counts == {"train/cat": 25, "train/dog": 25, "test/cat": 5, "test/dog": 5}
    assert cifar_subset(cifar, tmp_path / "all", 1000) == cifar
