import numpy as np
from PIL import Image

from dedup_pipeline.lib.calibration.transforms import (
    RECUT_TRANSFORMS,
    SUITE_TRANSFORMS,
    recrop,
    transform_named,
)


def test_recrop_stretches_the_box_back_to_the_full_size() -> None:
    pixels = np.zeros((40, 64, 3), dtype=np.uint8)
    pixels[:, 32:] = 255  # left half black, right half white
    picture = Image.fromarray(pixels)

    copy = recrop(picture, (0.5, 0.0, 1.0, 1.0))  # the white half only

    assert copy.size == picture.size and copy.mode == "RGB"
    assert np.asarray(copy).min() > 200


def test_recrop_of_an_off_centre_box_moves_the_picture() -> None:
    pixels = np.zeros((32, 32, 3), dtype=np.uint8)
    pixels[12:20, 12:20] = 255  # a centred white square
    copy = np.asarray(recrop(Image.fromarray(pixels), (0.0, 0.0, 0.75, 0.75))).mean(axis=2)

    rows, columns = np.nonzero(copy > 128)
    # (the box's centre is 12 px from the corner, so the square's centre, 16 px, maps to 16/24 * 32)
    assert abs(rows.mean() - 21.3) < 1.5 and abs(columns.mean() - 21.3) < 1.5


def test_every_transform_is_deterministic_and_named_uniquely() -> None:
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8))
    names = [transform.name for transform in SUITE_TRANSFORMS + RECUT_TRANSFORMS]
    assert len(set(names)) == len(names)
    for name in ("recrop medium", "recrop strong", "re-cut held out, 10% off"):
        transform = transform_named(name)
        assert np.array_equal(np.asarray(transform.apply(picture)), np.asarray(transform.apply(picture)))
