"""Rows of several arrays (one per data drop) seen as one array in position order, without being
copied into one.

Fresh memory is expensive on these machines (a first touch of a page traps to the host: copying
60,000 embeddings into a new array cost 0.9 s, against 0.04 s into memory already touched), and
a drop's join needs only some rows of most arrays. So the live images' embeddings and thumbnails
stay in the arrays their drops' files were read into, and indexing gathers just the rows asked for.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class StoredRows:
    """Position ``k`` is row ``rows[k]`` of ``parts[part[k]]``."""

    def __init__(self, parts: list[np.ndarray], part: np.ndarray, rows: np.ndarray) -> None:
        self.parts, self._part, self._rows = parts, part, rows

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self._part), *self.parts[0].shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.parts[0].dtype

    def __len__(self) -> int:
        return len(self._part)

    def __getitem__(self, index: np.ndarray | slice | int) -> np.ndarray:
        """The rows at ``index`` (positions, a slice or a mask), gathered into a new array."""
        positions = np.arange(len(self))[index]
        if np.ndim(positions) == 0:
            return self.parts[self._part[positions]][self._rows[positions]]
        out = np.empty((len(positions), *self.shape[1:]), dtype=self.dtype)
        part, rows = self._part[positions], self._rows[positions]
        for number, array in enumerate(self.parts):
            chosen = part == number
            if chosen.any():
                out[chosen] = array[rows[chosen]]
        return out

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        whole = self[np.arange(len(self))]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(positions, part)`` for each part: the position of each of its rows (-1 for rows
        that are not positions)."""
        for number, array in enumerate(self.parts):
            positions = np.full(len(array), -1, dtype=np.int64)
            chosen = np.flatnonzero(self._part == number)
            positions[self._rows[chosen]] = chosen
            yield positions, array

    def appended(self, extra: np.ndarray) -> StoredRows:
        """These rows followed by ``extra``'s, still without copying."""
        return StoredRows(
            [*self.parts, extra],
            np.concatenate([self._part, np.full(len(extra), len(self.parts), dtype=self._part.dtype)]),
            np.concatenate([self._rows, np.arange(len(extra), dtype=self._rows.dtype)]),
        )


Rows = np.ndarray | StoredRows


def row_blocks(rows: Rows) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:meth:`StoredRows.blocks` for either kind (an array is one block of itself)."""
    if isinstance(rows, StoredRows):
        yield from rows.blocks()
    else:
        yield np.arange(len(rows)), rows


def stacked(first: Rows, second: np.ndarray) -> Rows:
    """``first``'s rows followed by ``second``'s."""
    if isinstance(first, StoredRows):
        return first.appended(second)
    return StoredRows(
        [first, second],
        np.repeat([0, 1], [len(first), len(second)]),
        np.concatenate([np.arange(len(first)), np.arange(len(second))]),
    )
