import subprocess
import sys

import psutil

from dedup_pipeline.lib.runtime.memory import PeakMemory

# 320 MB touched and held a little while, in a child process: a worker's allocation, freed (the
# process exits) before the block ends. A child, so that memory this process freed earlier and keeps
# for reuse (see runtime.allocator) cannot hide the allocation.
ALLOCATE = "import time, numpy; block = numpy.ones(320 * 2**20 // 8); time.sleep(0.3)"


def test_peak_memory_sees_a_workers_allocation_freed_before_the_block_ends() -> None:
    baseline = psutil.Process().memory_info().rss
    with PeakMemory(interval=0.01) as peak:
        subprocess.run([sys.executable, "-c", ALLOCATE], check=True)
    assert peak.bytes >= baseline + 256 * 2**20
