import os
import threading
import time
from pathlib import Path

import pytest

from dedup_pipeline.lib.runtime.time_limit import TimeLimitExceeded, time_limit


def test_python_work_is_stopped_at_the_limit() -> None:
    started = time.monotonic()
    with pytest.raises(TimeLimitExceeded), time_limit(0.2):
        while True:
            pass
    assert 0.15 < time.monotonic() - started < 2


def test_a_read_blocked_in_the_kernel_is_interrupted(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)  # opening it for reading blocks until a writer comes, which never does
    with pytest.raises(TimeLimitExceeded), time_limit(0.2):
        os.open(fifo, os.O_RDONLY)


def test_work_within_the_limit_is_untouched_and_no_alarm_is_left_behind() -> None:
    with time_limit(0.3):
        total = sum(range(1000))
    time.sleep(0.5)
    assert total == 499500


def test_no_limit_applies_off_the_main_thread() -> None:
    outcome = []

    def work() -> None:
        with time_limit(0.05):
            time.sleep(0.2)
        outcome.append("finished")

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert outcome == ["finished"]
