import numpy as np
from PIL import Image

from dedup_pipeline.lib.features.thumbnails import THUMBNAIL_SIDE, thumbnail, thumbnail_descriptors
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
