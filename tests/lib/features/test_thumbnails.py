import numpy as np
from PIL import Image

from dedup_pipeline.lib.features.thumbnails import (
    MIN_DETAIL,
    THUMBNAIL_SIDE,
    detail,
    same_fill,
    thumbnail,
    thumbnail_descriptors,
)
from tests.conftest import smooth_picture


def test_thumbnail_is_the_whole_picture_squashed_to_a_square() -> None:
    picture = Image.new("RGB", (300, 100), (10, 20, 30))
    picture.paste((200, 0, 0), (0, 0, 150, 100))  # left half red
    small = thumbnail(picture)
    assert small.shape == (THUMBNAIL_SIDE, THUMBNAIL_SIDE, 3) and small.dtype == np.uint8
    assert (small[:, :14] == [200, 0, 0]).all() and (small[:, 18:] == [10, 20, 30]).all()


def test_descriptors_are_unit_and_ignore_a_uniform_brightness_shift() -> None:
    small = thumbnail(smooth_picture(1)).astype(np.int16)
    brighter = np.clip(small + 20, 0, 255)
    other = thumbnail(smooth_picture(2)).astype(np.int16)
    unclipped = small.max() + 20 <= 255
    vectors = thumbnail_descriptors(np.stack([small, brighter, other]).astype(np.uint8))
    assert vectors.shape == (3, 16 * 16 * 3)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    if unclipped:
        assert vectors[0] @ vectors[1] > 0.999
    assert vectors[0] @ vectors[2] < 0.9


def test_a_flat_thumbnail_has_a_zero_descriptor_not_nan() -> None:
    flat = np.full((1, 32, 32, 3), 128, dtype=np.uint8)
    assert np.all(thumbnail_descriptors(flat) == 0)


def test_a_flat_fill_has_no_detail_and_a_picture_has() -> None:
    grain = np.random.default_rng(0).integers(-1, 2, size=(2, 32, 32, 3))
    flat = np.clip(np.array([90, 140, 30]) + grain, 0, 255).astype(np.uint8)
    pictures = np.stack([thumbnail(smooth_picture(seed)) for seed in range(3)])
    assert (detail(flat) < MIN_DETAIL).all() and (detail(pictures) > 3 * MIN_DETAIL).all()
    assert same_fill(flat[:1], flat[1:]).all()
    assert not same_fill(flat[:1], np.clip(flat[1:].astype(int) + 20, 0, 255)).any()
