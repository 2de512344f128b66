import numpy as np
from PIL import Image

from dedup_pipeline.lib.inputs.pictures import luma


def test_luma_is_pillows_grayscale_for_every_rgb_value() -> None:
    levels = np.arange(256, dtype=np.uint8)
    every_rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(4096, 4096, 3)
    assert np.array_equal(luma(every_rgb), np.asarray(Image.fromarray(every_rgb).convert("L")))


def test_luma_keeps_the_leading_shape() -> None:
    stack = np.random.default_rng(0).integers(0, 256, (5, 7, 9, 3), dtype=np.uint8)
    assert luma(stack).shape == (5, 7, 9)
    assert np.array_equal(luma(stack)[2], luma(stack[2]))
