"""An ordered process-pool map that survives workers dying.

Decoders are native code: a malformed file can crash the interpreter (a segfault in a codec), and
a plain ``ProcessPoolExecutor.map`` then fails the whole run with ``BrokenProcessPool``. Here the
chunk that was waiting when the pool broke is re-run in fresh single-worker pools, halving it
until the crashing item is alone; that item yields a :class:`WorkerCrash` and the rest go on.

Results come back in input order, and only ``workers * 4`` chunks are in flight at a time, so
memory stays bounded however long the input is.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
IN_FLIGHT_PER_WORKER = 4


@dataclass(frozen=True)
class WorkerCrash:
    """The worker process died while handling this item."""

    reason: str = "the worker process crashed while decoding this file (native decoder fault)"


def _apply_all(function: Callable[[Item], Result], chunk: Sequence[Item]) -> list[Result]:
    return [function(item) for item in chunk]


def _new_pool(workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: the parent may hold torch/OpenMP threads, which do not survive a fork.
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def _isolate(function: Callable[[Item], Result], chunk: Sequence[Item]) -> list[Result | WorkerCrash]:
    """Run ``chunk`` in a fresh process; on a crash, bisect to find the item that kills it."""
    with _new_pool(1) as pool:
        try:
            return pool.submit(_apply_all, function, chunk).result()
        except BrokenProcessPool:
            pass
    if len(chunk) == 1:
        return [WorkerCrash()]
    middle = len(chunk) // 2
    return _isolate(function, chunk[:middle]) + _isolate(function, chunk[middle:])


def ordered_map(
    function: Callable[[Item], Result], items: Sequence[Item], workers: int, chunk_size: int
) -> Iterator[Result | WorkerCrash]:
    """``map(function, items)`` across ``workers`` processes; ``function`` must be picklable."""
    pending = deque(range(0, len(items), chunk_size))
    while pending:
        in_flight: deque[tuple[int, Future[list[Result]]]] = deque()
        crashed_chunk: int | None = None
        pool = _new_pool(workers)
        try:
            while pending or in_flight:
                while pending and len(in_flight) < workers * IN_FLIGHT_PER_WORKER:
                    start = pending.popleft()
                    in_flight.append((start, pool.submit(_apply_all, function, items[start : start + chunk_size])))
                start, future = in_flight[0]
                try:
                    results = future.result()
                except BrokenProcessPool:
                    crashed_chunk = start
                    break
                in_flight.popleft()
                yield from results
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if crashed_chunk is not None:
            in_flight.popleft()
            pending.extendleft(reversed([start for start, _ in in_flight]))
            yield from _isolate(function, items[crashed_chunk : crashed_chunk + chunk_size])
