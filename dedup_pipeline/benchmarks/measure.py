"""Running one benchmark case in a fresh process: its wall time, its result, and its peak memory
(``ru_maxrss`` of a process that ran nothing else, so it is the case's own peak plus imports)."""

from __future__ import annotations

import multiprocessing
import resource
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Measurement:
    """A case's results over repeats: each field the case reported, as the median over repeats
    (``seconds`` is the case's own timing of its work, without imports and data preparation)."""

    values: dict[str, object]
    all_seconds: list[float]
    peak_rss_mb: float  # largest over repeats

    def __getitem__(self, key: str) -> float:
        return self.values[key]  # type: ignore[return-value]

    def as_dict(self) -> dict[str, object]:
        return {**self.values, "all_seconds": self.all_seconds, "peak_rss_mb": self.peak_rss_mb}


def _call(function: Callable[..., dict[str, float]], args: tuple) -> tuple[dict[str, float], float]:
    result = function(*args)
    return result, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def isolated(function: Callable[..., dict[str, float]], *args: object, repeats: int = 3) -> Measurement:
    """Run ``function(*args)`` ``repeats`` times, each in a new spawned process."""
    runs = []
    for _ in range(repeats):
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            runs.append(pool.submit(_call, function, args).result())
    values = {
        key: statistics.median(float(run[0][key]) for run in runs) if isinstance(value, int | float) else value
        for key, value in runs[0][0].items()  # anything else (a breakdown): the first run's
    }
    return Measurement(values, [round(float(run[0].get("seconds", 0.0)), 3) for run in runs], max(r[1] for r in runs))


def fitted_exponent(sizes: Sequence[float], seconds: Sequence[float]) -> float:
    """k in time ~ N**k, least squares on log-log."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])
