import numpy as np

from dedup_pipeline.lib.storage.stored_rows import StoredRows, row_blocks, stacked


def test_rows_of_several_parts_read_as_one_array() -> None:
    first, second = np.arange(12).reshape(6, 2), np.arange(100, 106).reshape(3, 2)
    # positions: second[2], first[0], first[4], second[0]  (first[1..3], first[5], second[1] are not live)
    rows = StoredRows([first, second], np.array([1, 0, 0, 1]), np.array([2, 0, 4, 0]))
    whole = np.array([[104, 105], [0, 1], [8, 9], [100, 101]])
    assert rows.shape == (4, 2) and len(rows) == 4
    assert np.array_equal(np.asarray(rows), whole)
    assert np.array_equal(rows[np.array([3, 1])], whole[[3, 1]])
    assert np.array_equal(rows[1:3], whole[1:3]) and np.array_equal(rows[2], whole[2])
    assert np.array_equal(rows[np.array([True, False, False, True])], whole[[0, 3]])
    blocks = list(row_blocks(rows))
    assert blocks[0][0].tolist() == [1, -1, -1, -1, 2, -1] and blocks[1][0].tolist() == [3, -1, 0]
    extra = np.array([[7, 7]])
    assert np.array_equal(np.asarray(stacked(rows, extra)), np.concatenate([whole, extra]))
    assert np.array_equal(np.asarray(stacked(whole, extra)), np.concatenate([whole, extra]))
