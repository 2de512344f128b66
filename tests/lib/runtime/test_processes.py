import os
import subprocess
import sys

from dedup_pipeline.lib.runtime.processes import is_running, process_identity


def test_a_process_is_known_by_its_id_and_start_time() -> None:
    assert is_running(process_identity())
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    identity = process_identity(ended.pid)
    ended.wait()
    assert not is_running(identity)
    assert not is_running(f"{os.getpid()}:1")  # this process's id, started at another time: a reused id
    assert is_running(str(os.getpid())) and not is_running("not a pid")
