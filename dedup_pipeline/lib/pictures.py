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


def luma(pixels: np.ndarray) -> np.ndarray:
    """Pillow's RGB -> 'L' conversion (ITU-R 601-2 luma, with its fixed-point rounding) on an array."""
    wide = pixels.astype(np.uint32)
    return ((wide[..., 0] * 19595 + wide[..., 1] * 38470 + wide[..., 2] * 7471 + 0x8000) >> 16).astype(np.uint8)


def resized(pixels: np.ndarray, side: int, resample: Image.Resampling, reducing_gap: float | None = None) -> np.ndarray:
    """Pillow's resize of an RGB or grayscale array to ``side`` square; an array already that size
    is returned as it is (Pillow would return an unchanged copy)."""
    if pixels.shape[:2] == (side, side):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((side, side), resample, reducing_gap=reducing_gap))
