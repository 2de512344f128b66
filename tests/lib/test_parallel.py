import os

from dedup_pipeline.lib.parallel import WorkerCrash, ordered_map


def square_or_die(value: int) -> int:
    """Kills its worker process on 13 and 40, as a segfaulting decoder would."""
    if value in (13, 40):
        os._exit(11)
    return value * value


def test_results_keep_input_order_across_workers() -> None:
    assert list(ordered_map(abs, list(range(-50, 50)), workers=2, chunk_size=3)) == [abs(v) for v in range(-50, 50)]


def test_a_crashing_item_is_isolated_and_the_rest_complete() -> None:
    results = list(ordered_map(square_or_die, list(range(48)), workers=2, chunk_size=8))
    assert len(results) == 48
    for value, result in enumerate(results):
        if value in (13, 40):
            assert isinstance(result, WorkerCrash)
        else:
            assert result == value * value
