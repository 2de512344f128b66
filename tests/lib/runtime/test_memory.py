import time

import numpy as np
import psutil

from dedup_pipeline.lib.runtime.memory import PeakMemory


def test_peak_memory_sees_an_allocation_freed_before_the_block_ends() -> None:
    # this process alone: worker processes left by earlier tests may exit meanwhile
    baseline = psutil.Process().memory_info().rss
    with PeakMemory(interval=0.01) as peak:
        block = np.ones(320 * 2**20 // 8)  # 320 MB, touched: above any mmap threshold, so fresh pages
        time.sleep(0.1)  # several sampling intervals
        del block
    assert peak.bytes >= baseline + 256 * 2**20
