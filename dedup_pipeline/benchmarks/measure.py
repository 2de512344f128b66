"""Running one benchmark case in a fresh process: its wall time, its result, and its peak memory
(``ru_maxrss`` of a process that ran nothing else, so it is the case's own peak plus imports)."""

from __future__ import annotations

import multiprocessing
import resource
import statistics
from collections.abc import Callable, Mapping, Sequence
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


def _combined(runs: Sequence[tuple[dict[str, float], float]]) -> Measurement:
    """(result, peak RSS MB) of each run -> numbers as medians (anything else, a breakdown: the first
    run's), every run's seconds, the largest peak."""
    values = {
        key: statistics.median(float(run[0][key]) for run in runs) if isinstance(value, int | float) else value
        for key, value in runs[0][0].items()
    }
    return Measurement(values, [round(float(run[0].get("seconds", 0.0)), 3) for run in runs], max(r[1] for r in runs))


def _isolated_run(function: Callable[..., dict[str, float]], args: tuple) -> tuple[dict[str, float], float]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_call, function, args).result()


def isolated(function: Callable[..., dict[str, float]], *args: object, repeats: int = 3) -> Measurement:
    """Run ``function(*args)`` ``repeats`` times, each in a new spawned process."""
    return _combined([_isolated_run(function, args) for _ in range(repeats)])


Run = Callable[[], tuple[dict[str, float], float] | None]  # one run's (result, peak RSS MB), None: cannot run


def in_isolation(function: Callable[..., dict[str, float]], *args: object) -> Run:
    """One run of ``function(*args)`` in a new spawned process, for :func:`interleaved`."""
    return lambda: _isolated_run(function, args)


def interleaved(runs: Mapping[str, Run], repeats: int, warm_up: bool = True) -> dict[str, Measurement]:
    """Compare cases side by side: every case in turn, ``repeats`` rounds, so that a slow spell of
    a noisy machine falls on all of them rather than on one case's runs. With ``warm_up`` each first
    runs once unmeasured (reading its files into the page cache, as the measured runs then find
    them). A case that cannot run here (its run gives None) is left out of the result."""
    measured: dict[str, list[tuple[dict[str, float], float]]] = {name: [] for name in runs}
    for round_number in range(repeats + warm_up):
        for name, run in runs.items():
            if name not in measured:
                continue
            result = run()
            if result is None:
                del measured[name]
            elif round_number >= warm_up:
                measured[name].append(result)
    return {name: _combined(results) for name, results in measured.items()}


def fitted_exponent(sizes: Sequence[float], seconds: Sequence[float]) -> float:
    """k in time ~ N**k, least squares on log-log."""
    return float(np.polyfit(np.log(sizes), np.log(seconds), 1)[0])
