"""Peer tools measured on the same files in the same session, each in its own virtual
environment (never a dependency of this project): imagededup's PHash encoder and fastdup."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from dedup_pipeline.benchmarks.measure import Run

IMAGEDEDUP_PACKAGES = ["numpy", "pillow", "PyWavelets", "scipy", "tqdm", "scikit-learn", "matplotlib"]
FASTDUP_THRESHOLD = 0.9  # the setting the issue measured fastdup with

# imagededup's package __init__ imports its CNN module (torch, torchvision); its hashing does not use
# them, so the benchmark stubs those two modules and runs the hashing code unchanged.
IMAGEDEDUP_SCRIPT = """
import json, sys, time, types
for name, attribute in (("imagededup.methods.cnn", "CNN"), ("imagededup.utils.models", "CustomModel")):
    stub = types.ModuleType(name); setattr(stub, attribute, None); sys.modules[name] = stub
from imagededup.methods import PHash
root, workers = sys.argv[1], int(sys.argv[2])
start = time.perf_counter()
encodings = PHash(verbose=False).encode_images(image_dir=root, recursive=True, num_enc_workers=workers)
seconds = time.perf_counter() - start
import resource
rss = [resource.getrusage(who).ru_maxrss / 1024 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
print(json.dumps({"seconds": seconds, "images": len(encodings), "images_per_second": len(encodings) / seconds,
                  "peak_rss_mb": rss[0], "largest_worker_rss_mb": rss[1]}))
"""


def _venv(folder: Path, packages: list[str], no_deps: list[str]) -> Path | None:
    python = folder / "bin" / "python"
    if not python.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
            pip = [str(python), "-m", "pip", "install", "--quiet"]
            subprocess.run([*pip, *packages], check=True)
            if no_deps:
                subprocess.run([*pip, "--no-deps", *no_deps], check=True)
        except subprocess.CalledProcessError:
            return None
    return python


def imagededup_phash(work: Path, root: Path, workers: int) -> Run:
    """A run of imagededup 0.3.x ``PHash.encode_images`` over ``root`` for :func:`interleaved`: its
    result and peak RSS, or None when imagededup cannot be installed."""

    def run() -> tuple[dict[str, float], float] | None:
        python = _venv(work / "imagededup-venv", IMAGEDEDUP_PACKAGES, ["imagededup"])
        if python is None:
            return None
        completed = subprocess.run(
            [str(python), "-c", IMAGEDEDUP_SCRIPT, str(root), str(workers)], capture_output=True, text=True, check=True
        )
        result = json.loads(completed.stdout.strip().splitlines()[-1])
        return result, result["peak_rss_mb"]

    return run


# fastdup's licence is non-commercial: a benchmark peer only. Its default model ships in the wheel.
FASTDUP_SCRIPT = """
import json, resource, sys, time
import fastdup
root, work, threshold, threads = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
start = time.perf_counter()
fastdup.create(work_dir=work, input_dir=root).run(threshold=threshold, num_threads=threads, overwrite=True)
seconds = time.perf_counter() - start
rss = [resource.getrusage(who).ru_maxrss / 1024 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
print(json.dumps({"seconds": seconds, "peak_rss_mb": max(rss)}))
"""


def fastdup_run(work: Path, root: Path, threads: int) -> dict[str, float] | None:
    """fastdup's whole run (decode, embed, kNN, components) on ``root`` (None when not installable)."""
    python = _venv(work / "fastdup-venv", ["fastdup"], [])
    if python is None:
        return None
    arguments = [str(root), str(work / "fastdup-work"), str(FASTDUP_THRESHOLD), str(threads)]
    completed = subprocess.run(
        [str(python), "-c", FASTDUP_SCRIPT, *arguments], capture_output=True, text=True, check=True
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])
