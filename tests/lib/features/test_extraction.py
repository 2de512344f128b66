from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from dedup_pipeline.lib.features.extraction import choose_embedding_size, extract
from dedup_pipeline.lib.features.image_work import ExtractionSettings, embedder_for
from dedup_pipeline.lib.features.views import view_hashes
from dedup_pipeline.lib.inputs.sources import ImageSource
from tests.conftest import encoded, smooth_picture

PLUGIN = "tests.lib.features.test_extraction:plugin_factory"
SETTINGS = ExtractionSettings(
    hash_size=8,
    hash_algorithms=("phash", "dhash"),
    embedding_size=16,
    max_pixels=10**7,
    embedding_model=PLUGIN,
    embedding_batch_size=4,
)


@pytest.fixture(autouse=True)
def fresh_models() -> None:
    embedder_for.cache_clear()  # each test sees the batches of its own model instance


class MeanColourEmbedder:
    """A stand-in model: the mean colour, unit length (the real model is tested separately)."""

    name = "mean-colour"
    image_size = 16
    dimension = 3

    def __init__(self) -> None:
        self.batches: list[int] = []

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        self.batches.append(len(pixels))
        means = pixels.reshape(len(pixels), -1, 3).mean(axis=1) + 1.0
        return (means / np.linalg.norm(means, axis=1, keepdims=True)).astype(np.float32)


def sources(tmp_path: Path) -> list[ImageSource]:
    files = []
    for index in range(6):
        path = tmp_path / f"{index}.png"
        path.write_bytes(encoded(smooth_picture(index), "PNG"))
        files.append(path)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    files.insert(3, tmp_path / "bad.jpg")
    files.append(tmp_path / "gone.png")  # vanished between discovery and reading
    return [ImageSource(f.name, "train", None, f) for f in files]


def test_one_pass_yields_manifest_hashes_embeddings_and_failures(tmp_path: Path) -> None:
    progress: list[int] = []
    result = extract(sources(tmp_path), SETTINGS, workers=1, progress=lambda done, total: progress.append(done))
    embedder = embedder_for(PLUGIN, 16, None)
    assert result.manifest["path"].to_list() == [f"{i}.png" for i in range(6)]
    assert result.manifest["image_id"].to_list() == list(range(6))
    assert sorted(result.failures["path"].to_list()) == ["bad.jpg", "gone.png"]
    assert all(reason for reason in result.failures["reason"])
    assert result.hashes["phash"].shape == (6, 1) and result.hashes["phash"].dtype == np.uint64
    assert result.embeddings.shape == (6, 3)
    assert embedder.batches == [4, 4]  # every batch padded to the batch size
    assert progress == [8]  # once per chunk


def test_chunks_are_embedded_in_batches_within_each_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dedup_pipeline.lib.features.extraction.CHUNK_SIZE", 3)
    progress: list[int] = []
    chunked = extract(sources(tmp_path), SETTINGS, workers=1, progress=lambda done, total: progress.append(done))
    assert progress == [3, 6, 8]
    # 3 decodable, 2 (one bad file), 1 (one gone): each padded to the batch size of 4
    assert embedder_for(PLUGIN, 16, None).batches == [4, 4, 4]
    monkeypatch.setattr("dedup_pipeline.lib.features.extraction.CHUNK_SIZE", 128)
    whole = extract(sources(tmp_path), SETTINGS, workers=1)
    assert chunked.manifest.equals(whole.manifest) and chunked.failures.equals(whole.failures)
    assert np.array_equal(chunked.embeddings, whole.embeddings)
    assert np.array_equal(chunked.thumbnails, whole.thumbnails)
    assert np.array_equal(chunked.view_hashes, view_hashes(whole.thumbnails))  # each image's own, chunk by chunk
    assert all(np.array_equal(chunked.hashes[name], whole.hashes[name]) for name in whole.hashes)


def test_large_jpegs_are_decoded_reduced_with_their_full_size_recorded(tmp_path: Path) -> None:
    path = tmp_path / "large.jpg"
    path.write_bytes(encoded(smooth_picture(3, size=(1600, 1200)), "JPEG", quality=92))
    source = [ImageSource(path.name, "train", None, path)]
    reduced = extract(source, SETTINGS, workers=1)
    full = extract(source, replace(SETTINGS, reduced_decoding=False), workers=1)
    assert reduced.manifest.select("width", "height").row(0) == full.manifest.select("width", "height").row(0)
    assert "reduced size 200x150" in reduced.manifest["notes"][0] and full.manifest["notes"][0] is None
    for name in SETTINGS.hash_algorithms:
        distance = int(reduced.hashes[name][0, 0] ^ full.hashes[name][0, 0]).bit_count()
        assert distance <= 2, name  # the same picture, whichever way it was decoded
    assert (
        np.abs(reduced.thumbnails.astype(int) - full.thumbnails).mean() < 4
    )  # libjpeg scales chroma a little differently


def test_worker_processes_give_the_same_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("dedup_pipeline.lib.features.extraction.IN_PROCESS_BELOW", 0)  # workers even for 8 images
    serial = extract(sources(tmp_path), SETTINGS, workers=1)
    parallel = extract(sources(tmp_path), SETTINGS, workers=2)  # each worker loads its own model
    assert serial.manifest.equals(parallel.manifest)
    assert serial.failures.equals(parallel.failures)
    assert (serial.hashes["dhash"] == parallel.hashes["dhash"]).all()
    assert np.array_equal(serial.embeddings, parallel.embeddings)


def test_without_embedder(tmp_path: Path) -> None:
    settings = ExtractionSettings(8, ("ahash",), None, 10**7)
    assert extract(sources(tmp_path), settings, workers=1).embeddings is None


def plugin_factory(image_size: int | None) -> MeanColourEmbedder:
    """Used by test_embedding to plug a model in by import path."""
    return MeanColourEmbedder()


def test_embedding_size_follows_the_data(tmp_path: Path) -> None:
    def images(side: int, count: int) -> list[ImageSource]:
        made = []
        for index in range(count):
            path = tmp_path / f"{side}_{index}.png"
            path.write_bytes(encoded(smooth_picture(index, size=(side + 10, side)), "PNG"))
            made.append(ImageSource(path.name, "train", None, path))
        return made

    assert choose_embedding_size(images(32, 5), default=224) == 64
    assert choose_embedding_size(images(100, 5), default=224) == 128
    assert choose_embedding_size(images(600, 3), default=224) == 224
    assert choose_embedding_size([], default=224) == 224
