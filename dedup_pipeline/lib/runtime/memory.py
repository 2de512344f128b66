"""Peak resident memory of a block of work, for the stage metrics the benchmarks report.

``ru_maxrss`` only ever grows over a process's life, so it cannot tell one stage from the next;
a background thread samples the resident set of this process and its children (the decode
workers) instead. Short spikes between samples can be missed: the figure is a lower bound.
"""

from __future__ import annotations

import threading
from types import TracebackType

import psutil

SAMPLE_SECONDS = 0.05


def tree_rss() -> int:
    """Resident bytes of this process and all its descendants."""
    process = psutil.Process()
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:  # exited between listing and reading
            continue
    return total


class PeakMemory:
    """``with PeakMemory() as peak: ...`` then ``peak.bytes`` is the largest sampled resident size."""

    def __init__(self, interval: float = SAMPLE_SECONDS) -> None:
        self.bytes = 0
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-memory", daemon=True)

    def _sample(self) -> None:
        while True:
            self.bytes = max(self.bytes, tree_rss())
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> PeakMemory:
        self.bytes = tree_rss()
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.bytes = max(self.bytes, tree_rss())
