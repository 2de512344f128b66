"""An ordered process-pool map over chunks that survives workers dying.

Decoders are native code: a malformed file can crash the interpreter (a segfault in a codec), and
a plain ``ProcessPoolExecutor.map`` then fails the whole run with ``BrokenProcessPool``. Here the
chunk that was waiting when the pool broke is re-run in fresh single-worker pools, halving it
until the crashing item is alone; that item yields a :class:`WorkerCrash` and the rest go on.

The function takes a whole chunk, so a worker can process its items together (one batched
computation, one compact result to send back) rather than one pickled object per item. Results
come back in input order, and only ``workers * 4`` chunks are in flight at a time, so memory stays
bounded however long the input is.
"""

from __future__ import annotations

import multiprocessing.context
import os
import sys
import types
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from dedup_pipeline.lib.runtime.allocator import keep_freed_memory_for_reuse
from dedup_pipeline.lib.runtime.time_limit import allow_hard_stop

Item = TypeVar("Item")
Result = TypeVar("Result")
IN_FLIGHT_PER_WORKER = 4


@dataclass(frozen=True)
class WorkerCrash:
    """The worker process died while handling this item."""

    reason: str = (
        "the worker process died on this file (a native decoder fault, or a decode that ran past the "
        "per-file time limit without returning)"
    )


def available_cores() -> int:
    """The cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _prepare_worker(threads: int) -> None:
    """Limit a worker's BLAS threads to its share of the cores: each BLAS otherwise starts a thread
    per core in every worker, and its spinning threads then fight (two workers' small matrix
    products, the view hashes, ran 4x slower than with one thread each). And keep freed memory in
    the worker for reuse: every chunk's arrays were fresh mmaps, page-faulted in and unmapped again.
    And let a time limit kill a worker whose work never returns (the pool survives that as a crash)."""
    import numpy  # noqa: F401  (threadpoolctl limits only the libraries already loaded)
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads, user_api="blas")
    keep_freed_memory_for_reuse()
    allow_hard_stop()


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """While a process starts, a bare ``__main__`` in place of the program's: a spawned process
    otherwise re-runs the program's main script (``runpy``) before its first task. Under the
    ``dedup-pipeline`` or ``dagster`` commands that imports Dagster, polars and torch in every worker:
    about 3 seconds and 300 MB each, for workers that need none of it."""
    program_main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = program_main


class _WorkerProcess(multiprocessing.context.SpawnProcess):
    def start(self) -> None:
        with _main_module_hidden():
            super().start()


class _WorkerContext(multiprocessing.context.SpawnContext):
    """Spawn (not fork: the parent may hold torch/OpenMP threads, which do not survive a fork) of
    processes that import only what their tasks need."""

    Process = _WorkerProcess


def _new_pool(workers: int) -> ProcessPoolExecutor:
    """Workers run functions of importable modules (never of ``__main__``, which they do not load)."""
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_WorkerContext(),
        initializer=_prepare_worker,
        initargs=(max(1, available_cores() // workers),),
    )


def _isolate(
    function: Callable[[Sequence[Item]], Result], items: Sequence[Item], span: range
) -> list[tuple[range, Result | WorkerCrash]]:
    """Run ``items[span]`` in a fresh process; on a crash, bisect to find the item that kills it."""
    with _new_pool(1) as pool:
        try:
            return [(span, pool.submit(function, items[span.start : span.stop]).result())]
        except BrokenProcessPool:
            pass
    if len(span) == 1:
        return [(span, WorkerCrash())]
    middle = span.start + len(span) // 2
    return _isolate(function, items, range(span.start, middle)) + _isolate(function, items, range(middle, span.stop))


def map_chunks(
    function: Callable[[Sequence[Item]], Result], items: Sequence[Item], workers: int, chunk_size: int
) -> Iterator[tuple[range, Result | WorkerCrash]]:
    """``function`` over consecutive chunks of ``items`` in ``workers`` processes (``function`` must be
    picklable), yielding each chunk's index range and result in input order. After a crash the
    chunk's results come in parts, still in order, and the crashing item's range yields a crash."""
    pending = deque(range(start, min(start + chunk_size, len(items))) for start in range(0, len(items), chunk_size))
    while pending:
        in_flight: deque[tuple[range, Future[Result]]] = deque()
        crashed: range | None = None
        pool = _new_pool(workers)
        try:
            while pending or in_flight:
                while pending and len(in_flight) < workers * IN_FLIGHT_PER_WORKER:
                    span = pending.popleft()
                    in_flight.append((span, pool.submit(function, items[span.start : span.stop])))
                span, future = in_flight[0]
                try:
                    result = future.result()
                except BrokenProcessPool:
                    crashed = span
                    break
                in_flight.popleft()
                yield span, result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if crashed is not None:
            in_flight.popleft()
            pending.extendleft(reversed([span for span, _ in in_flight]))
            yield from _isolate(function, items, crashed)
