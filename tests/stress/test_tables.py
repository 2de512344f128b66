import polars as pl

from dedup_pipeline.stress.tables import compare


def test_lost_extra_and_repeated_rows_are_counted_against_the_reference() -> None:
    reference = {"t": pl.DataFrame({"path": ["a", "b", "c"], "keep": [True, False, None]})}
    found = {"t": pl.DataFrame({"path": ["a", "a", "c", "d"], "keep": [True, True, None, True]})}
    difference = compare(reference, found)["t"]
    assert (difference.reference_rows, difference.rows) == (3, 4)
    assert (difference.lost, difference.extra, difference.repeated) == (1, 1, 1)
    assert compare(reference, reference)["t"].lost == compare(reference, reference)["t"].extra == 0
