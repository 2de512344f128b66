"""A per-file time limit, so that one slow or hanging file cannot stall a run.

Two stages, because Python can only interrupt Python code:

* after ``seconds`` of wall time, SIGALRM raises :class:`TimeLimitExceeded` in the work. That stops
  Pillow's decoders, which decode in Python-driven steps, and reads that block in the kernel (a
  FIFO, a stalled network share), which the signal interrupts.
* in a worker process (:func:`allow_hard_stop`, called by ``parallel``'s worker initializer), a
  second timer also kills the process after ``HARD_STOP_FACTOR`` times as many seconds of CPU time:
  a native decoder looping without ever returning to Python cannot be interrupted, but its process
  can be killed, and the pool's crash isolation then records that one file.

Only the main thread can receive signals: elsewhere the limit is not applied.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HARD_STOP_FACTOR = 2.0
_hard_stop = False


class TimeLimitExceeded(BaseException):
    """A BaseException, like KeyboardInterrupt: the decoders' ``except Exception`` (which record a
    broken file) must not turn it into a decode error."""


def allow_hard_stop() -> None:
    """Let :func:`time_limit` kill this process when the work never returns to Python (worker
    processes only: the process a run's steps live in must never be killed)."""
    global _hard_stop
    _hard_stop = True


def _raise_time_limit(signum: int, frame: object) -> None:
    raise TimeLimitExceeded


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`TimeLimitExceeded` in the block after ``seconds`` (None or 0: no limit)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _raise_time_limit)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    if _hard_stop:
        signal.signal(signal.SIGPROF, signal.SIG_DFL)  # the default action of SIGPROF ends the process
        signal.setitimer(signal.ITIMER_PROF, seconds * HARD_STOP_FACTOR)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if _hard_stop:
            signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGALRM, previous)
