"""Models run by ONNX Runtime from a file exported once from their PyTorch definition.

Why not torch itself: on this 2-core CPU, ONNX Runtime imports in 0.1 s where torch takes 1.5 s
(a data drop or a ``check`` of one image would spend most of its time importing torch), and it
embeds 1.2-1.4x faster at the batch sizes the pipeline uses (EfficientNet-Lite0: 1,561 against
1,291 images/s at 64 px, batch 64; 156 against 113 at 224 px, batch 8). Its output does not depend
on the thread count or on a picture's companions in the batch (checked bit for bit), and it matches
torch's float32 output to 7e-7.

The export needs torch and happens once per model, weights and library versions: the file is kept
in a cache folder (``DEDUP_PIPELINE_CACHE``, else ``$XDG_CACHE_HOME/dedup-pipeline``, else
``~/.cache/dedup-pipeline``), written under a temporary name and renamed into place, so processes
that export at the same time each leave a whole file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

CACHE_VARIABLE = "DEDUP_PIPELINE_CACHE"
INPUT_NAME = "pixels"  # (N, H, W, 3) uint8
OUTPUT_NAME = "features"  # (N, dimension) float32


def model_cache() -> Path:
    """The folder exported models are kept in."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dedup-pipeline"


def exported_model(name: str, fingerprint: Mapping[str, str], export: Callable[[Path], None]) -> Path:
    """The ONNX file of model ``name`` for this ``fingerprint`` (whatever the exported graph depends
    on: weights, library versions), exported by ``export(path)`` when the cache lacks it."""
    digest = hashlib.sha256(json.dumps(dict(fingerprint), sort_keys=True).encode()).hexdigest()[:16]
    path = model_cache() / f"{name}-{digest}.onnx"
    if path.is_file():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:  # a read-only home, say: export for this machine's temporary folder instead
        fallback = Path(tempfile.gettempdir()) / "dedup-pipeline-models"
        warnings.warn(f"cannot use {path.parent} for exported models ({error}); using {fallback}", stacklevel=2)
        path = fallback / path.name
        if path.is_file():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        export(Path(temporary))
        os.chmod(temporary, 0o644)  # mkstemp's files are private; a model is not
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return path


class OnnxFeatures:
    """An exported network: (N, H, W, 3) uint8 pictures in, (N, dimension) float32 features out."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or 0  # 0: one per core
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return self._session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(pixels, dtype=np.uint8)})[0]
