"""Shared fixtures: every test image is generated here or comes from an installed package."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dedup_pipeline.lib.inputs.demo_dataset import build_demo_dataset


def smooth_picture(seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """A distinct, photo-like (low-frequency plus texture) RGB picture for each seed."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)).resize(
        size, Image.Resampling.BICUBIC
    )
    texture = rng.normal(0, 12, size=(size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(coarse, dtype=np.float64) + texture, 0, 255).astype(np.uint8))


def encoded(image: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **options)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, str, str]]]:
    root = tmp_path_factory.mktemp("demo") / "images"
    return root, build_demo_dataset(root)
