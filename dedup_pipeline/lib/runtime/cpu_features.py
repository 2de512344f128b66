"""What this CPU computes fast, for choices that trade a little precision for speed."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

Precision = Literal["auto", "float32", "bfloat16"]


@cache
def bfloat16_is_fast() -> bool:
    """True where the CPU multiplies bfloat16 natively (AVX512-BF16 or AMX, the instructions oneDNN
    uses): there bfloat16 matmuls and convolutions run 2-4x faster than float32. Elsewhere bfloat16
    is emulated, and slower. Read from the kernel's CPU flags where it lists them, so the answer
    needs no torch import (about 1.5 s); elsewhere torch is asked."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        flags = set(cpuinfo.read_text(errors="replace").split())
        return bool(flags & {"avx512_bf16", "amx_bf16"})
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def uses_bfloat16(precision: Precision) -> bool:
    """Whether ``precision`` means bfloat16 here (``auto``: where it is native)."""
    if precision not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"precision must be auto, float32 or bfloat16, got {precision!r}")
    return precision == "bfloat16" or (precision == "auto" and bfloat16_is_fast())
