"""What this CPU computes fast, for choices that trade a little precision for speed."""

from __future__ import annotations

from functools import cache
from typing import Literal

Precision = Literal["auto", "float32", "bfloat16"]


@cache
def bfloat16_is_fast() -> bool:
    """True where oneDNN multiplies bfloat16 natively (AVX512-BF16 or AMX): there bfloat16 matmuls
    and convolutions run 2-4x faster than float32. Elsewhere bfloat16 is emulated, and slower."""
    import torch  # only where a model or a join is about to use it

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def uses_bfloat16(precision: Precision) -> bool:
    """Whether ``precision`` means bfloat16 here (``auto``: where it is native)."""
    if precision not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"precision must be auto, float32 or bfloat16, got {precision!r}")
    return precision == "bfloat16" or (precision == "auto" and bfloat16_is_fast())
