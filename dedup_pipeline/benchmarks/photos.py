"""A large-photo corpus for the decode benchmark: camera-sized JPEGs made from real photographs.

scikit-image ships a handful of real photographs (at most 1.4 megapixels); each corpus file is a
random crop of one of them, resized to 1-12 megapixels at a common camera aspect ratio, with
sensor-like noise (so the JPEG carries as much detail as a camera's) and saved at quality 85-95.
Decoding cost depends on the pixel count and the entropy-coded data, both of which this matches.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")
ASPECTS = (4 / 3, 3 / 2, 16 / 9, 1.0)
MEGAPIXELS = (1.0, 12.0)
NOISE_TILE = 1024
SPLIT = "train"  # the corpus is a dataset folder: <root>/<split>/<image>


def _make_photo(index: int, folder: Path) -> None:
    path = folder / SPLIT / f"{index:05d}.jpg"
    if path.exists():
        return
    rng = np.random.default_rng(index)
    source = getattr(skimage.data, PHOTOS[index % len(PHOTOS)])()
    height, width = source.shape[:2]
    crop_h, crop_w = (int(side * rng.uniform(0.6, 1.0)) for side in (height, width))
    top, left = rng.integers(0, height - crop_h + 1), rng.integers(0, width - crop_w + 1)
    crop = Image.fromarray(source[top : top + crop_h, left : left + crop_w])
    pixels = rng.uniform(*MEGAPIXELS) * 1e6
    aspect = ASPECTS[rng.integers(len(ASPECTS))]
    long_side, short_side = int(np.sqrt(pixels * aspect)), int(np.sqrt(pixels / aspect))
    size = (long_side, short_side) if rng.random() < 0.7 else (short_side, long_side)
    photo = np.asarray(crop.resize(size, Image.Resampling.BICUBIC), dtype=np.int16)
    noise = rng.integers(-6, 7, size=(NOISE_TILE, NOISE_TILE, 3), dtype=np.int16)
    reps = (-(-size[1] // NOISE_TILE), -(-size[0] // NOISE_TILE), 1)
    photo = photo + np.tile(noise, reps)[: size[1], : size[0]]
    Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=int(rng.integers(85, 96)))


def build_photo_corpus(folder: Path, count: int, workers: int) -> Path:
    """``count`` JPEGs of 1-12 megapixels in ``folder``/train (kept between runs; made once)."""
    (folder / SPLIT).mkdir(parents=True, exist_ok=True)
    missing = [index for index in range(count) if not (folder / SPLIT / f"{index:05d}.jpg").exists()]
    if missing:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            pool.starmap(_make_photo, [(index, folder) for index in missing], chunksize=8)
    return folder
