import os
from collections.abc import Sequence

from dedup_pipeline.lib.parallel import WorkerCrash, map_chunks


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
