import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from dedup_pipeline.lib.runtime.parallel import WorkerCrash, map_chunks
from dedup_pipeline.lib.runtime.time_limit import time_limit


def squares_or_die(values: Sequence[int]) -> list[int]:
    """Kills its worker process on 13 and 40, as a segfaulting decoder would."""
    if 13 in values or 40 in values:
        os._exit(11)
    return [value * value for value in values]


def test_chunks_keep_input_order_across_workers() -> None:
    values = list(range(-50, 50))
    results = list(map_chunks(sorted, values, workers=2, chunk_size=7))
    assert [span for span, _ in results] == [range(s, min(s + 7, 100)) for s in range(0, 100, 7)]
    assert [value for _, chunk in results for value in chunk] == values


def test_a_crashing_item_is_isolated_and_the_rest_complete() -> None:
    results = list(map_chunks(squares_or_die, list(range(48)), workers=2, chunk_size=8))
    covered = [index for span, _ in results for index in span]
    assert covered == list(range(48))
    for span, result in results:
        if isinstance(result, WorkerCrash):
            assert list(span) in ([13], [40])
        else:
            assert result == [value * value for value in span]
    assert sum(isinstance(result, WorkerCrash) for _, result in results) == 2


def test_workers_do_not_rerun_the_programs_main_script(tmp_path: Path) -> None:
    """A console script's main (dedup-pipeline, dagster) imports Dagster and torch: workers skip it."""
    marker = tmp_path / "imports.txt"
    script = tmp_path / "program.py"
    script.write_text(
        "from pathlib import Path\n"
        f"with open({str(marker)!r}, 'a') as log:\n"
        "    log.write('main ran\\n')\n"
        "from dedup_pipeline.lib.runtime.parallel import map_chunks\n"
        "if __name__ == '__main__':\n"
        "    print([result for _, result in map_chunks(len, list(range(10)), workers=2, chunk_size=3)])\n"
    )
    completed = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[3, 3, 3, 1]"
    assert marker.read_text() == "main ran\n"  # once: the program itself, in neither worker


def squares_or_hang(values: Sequence[int]) -> list[int]:
    """Each value within a one-second time limit; on 21 it spins where the limit's signal cannot
    reach, as a native decoder stuck in a loop would."""
    results = []
    for value in values:
        with time_limit(1.0):
            if value == 21:
                signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
                while True:
                    pass
            results.append(value * value)
    return results


def test_a_worker_whose_work_never_returns_is_stopped_and_isolated() -> None:
    results = list(map_chunks(squares_or_hang, list(range(24)), workers=2, chunk_size=6))
    crashes = [list(span) for span, result in results if isinstance(result, WorkerCrash)]
    assert crashes == [[21]]
    assert [index for span, _ in results for index in span] == list(range(24))
