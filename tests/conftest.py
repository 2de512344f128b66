"""Shared fixtures: every test image is generated here or comes from an installed package."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dedup_pipeline.lib.features.onnx_models import CACHE_VARIABLE
from dedup_pipeline.lib.inputs.demo_dataset import build_demo_dataset


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Exported models go to a folder of this test session (commands the tests start inherit it),
    not to the user's cache: the suite exports the default model once and leaves nothing behind."""
    folder = tmp_path_factory.mktemp("model-cache")
    before = os.environ.get(CACHE_VARIABLE)
    os.environ[CACHE_VARIABLE] = str(folder)
    yield folder
    if before is None:
        os.environ.pop(CACHE_VARIABLE, None)
    else:
        os.environ[CACHE_VARIABLE] = before


@pytest.fixture(scope="session", autouse=True)
def dagster_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A Dagster instance of this test session, configured as the project's (``dagster_home/``:
    the ``duckdb`` pool limited to one step): runs the tests start, and the runs they kill, never
    touch the developer's instance."""
    folder = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(Path(__file__).parents[1] / "dagster_home" / "dagster.yaml", folder / "dagster.yaml")
    before = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("DAGSTER_HOME", None)
    else:
        os.environ["DAGSTER_HOME"] = before


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


def start_holder(code: str) -> subprocess.Popen:
    """A Python process running ``code`` that prints 'ready' once it holds what it holds (a lock,
    an open database); stop it with :func:`stop_holder`."""
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def hold_store_lock(lock_file: Path, seconds: float) -> subprocess.Popen:
    """Another process holding a store's write lock for ``seconds``."""
    return start_holder(f"""
        import time
        from dedup_pipeline.lib.storage.write_lock import writer_lock
        with writer_lock({str(lock_file)!r}):
            print("ready", flush=True)
            time.sleep({seconds})
    """)


def stop_holder(process: subprocess.Popen) -> None:
    """Kill a process a test started (by its id) and reap it."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
