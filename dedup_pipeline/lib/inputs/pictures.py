"""Pictures as (height, width, 3) uint8 RGB arrays, and the few Pillow operations on them.

Extraction keeps each decoded picture as an array: the fast JPEG path decodes into one, and hashes,
digests and thumbnails read one. A Pillow image is made only where a resize really changes the
size, which spares small pictures (CIFAR's 32 x 32) most of Pillow's per-call overhead. Functions
also accept Pillow images, which calibration's synthetic copies and the tests are.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

Picture = np.ndarray | Image.Image


def rgb_pixels(picture: Picture) -> np.ndarray:
    """The picture as a (height, width, 3) uint8 RGB array (no copy when it already is one)."""
    if isinstance(picture, Image.Image):
        return np.asarray(picture if picture.mode == "RGB" else picture.convert("RGB"))
    if picture.ndim != 3 or picture.shape[2] != 3 or picture.dtype != np.uint8:
        raise ValueError(f"expected (height, width, 3) uint8 RGB pixels, got {picture.shape} {picture.dtype}")
    return picture


LUMA_WEIGHTS = np.array([19595, 38470, 7471], dtype=np.float32)  # Pillow's, in 16-bit fixed point


def luma(pixels: np.ndarray) -> np.ndarray:
    """Pillow's RGB -> 'L' conversion (ITU-R 601-2 luma, with its fixed-point rounding) on an array.
    As one float32 product: every partial sum is an integer below 2**24, so it is exact."""
    sums = pixels.reshape(-1, 3).astype(np.float32) @ LUMA_WEIGHTS
    return ((sums + 0x8000) * (1.0 / 0x10000)).astype(np.uint8).reshape(pixels.shape[:-1])


def resized(pixels: np.ndarray, side: int, resample: Image.Resampling, reducing_gap: float | None = None) -> np.ndarray:
    """Pillow's resize of an RGB or grayscale array to ``side`` square; an array already that size
    is returned as it is (Pillow would return an unchanged copy)."""
    if pixels.shape[:2] == (side, side):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((side, side), resample, reducing_gap=reducing_gap))
