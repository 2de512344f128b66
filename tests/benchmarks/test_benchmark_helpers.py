from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dedup_pipeline.benchmarks.cases import (
    PLANTED_FRACTION,
    hamming_synthetic,
    planted_embeddings,
    planted_hashes,
    sampled_recall,
)
from dedup_pipeline.benchmarks.measure import fitted_exponent, in_isolation, interleaved, isolated
from dedup_pipeline.benchmarks.photos import build_photo_corpus
from dedup_pipeline.benchmarks.pipeline import cifar_subset
from dedup_pipeline.lib.search.cosine_join import cosine_pairs


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


def test_interleaved_alternates_the_cases_after_a_warm_up_and_leaves_out_what_cannot_run() -> None:
    order: list[str] = []

    def case(name: str, seconds: list[float]):
        def run():
            order.append(name)
            return {"seconds": seconds[len(order) % len(seconds)], "label": name}, 100.0

        return run

    measured = interleaved(
        {"a": case("a", [1.0, 2.0, 3.0]), "b": case("b", [5.0]), "missing": lambda: order.append("m")},
        repeats=3,
    )
    assert order == ["a", "b", "m", "a", "b", "a", "b", "a", "b"]  # the warm-up round, then three rounds
    assert set(measured) == {"a", "b"} and len(measured["a"].all_seconds) == 3
    assert measured["b"]["seconds"] == 5.0 and measured["a"].values["label"] == "a"
    spawned = interleaved({"hamming": in_isolation(hamming_synthetic, 2_000, 8, "multi-index")}, 1, warm_up=False)
    assert spawned["hamming"]["pairs"] >= 2_000 * PLANTED_FRACTION * 0.9


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


def test_planted_embeddings_are_unit_rows_with_their_copies_close() -> None:
    vectors, planted = planted_embeddings(5_000, dimension=64)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    similarity = np.einsum("nd,nd->n", vectors[planted[:, 0]], vectors[planted[:, 1]])
    assert len(planted) == 50 and similarity.min() > 0.84 and similarity.max() < 0.995


def test_sampled_recall_counts_the_pairs_missed() -> None:
    vectors, planted = planted_embeddings(3_000, dimension=32)
    every = sampled_recall(vectors, 0.8, tuple(cosine_pairs(vectors, 0.8)[:2]), queries=3_000)
    assert every["recall"] == 1.0 and every["exact_pairs"] >= len(planted)
    none = sampled_recall(vectors, 0.8, (np.zeros(0, np.int64), np.zeros(0, np.int64)), queries=3_000)
    assert none["recall"] == 0.0


def test_photo_corpus_has_camera_sized_jpegs(tmp_path: Path) -> None:
    folder = build_photo_corpus(tmp_path / "photos", 2, workers=1)
    sizes = [Image.open(path).size for path in sorted(folder.glob("train/*.jpg"))]
    assert len(sizes) == 2 and all(1e6 * 0.95 <= w * h <= 12e6 for w, h in sizes)
