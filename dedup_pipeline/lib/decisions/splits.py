"""Which split wins when a duplicate spans splits.

Splits earlier in the priority list keep their images; later ("evaluation") splits drop the
copies. Splits not in the list come after the listed ones, alphabetically.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import polars as pl

DEFAULT_SPLIT_PRIORITY: tuple[str, ...] = ("train", "training", "val", "valid", "validation", "dev", "test", "testing")


def split_ranks(splits: Iterable[str], priority: Sequence[str] = DEFAULT_SPLIT_PRIORITY) -> dict[str, int]:
    """Rank every split present: 0 is the split that keeps its images first."""
    present = sorted(set(splits))
    listed = [split for split in priority if split in present]
    unlisted = [split for split in present if split not in priority]
    return {split: rank for rank, split in enumerate(listed + unlisted)}


def with_split_rank(
    frame: pl.DataFrame, ranks: dict[str, int], split: str = "split", rank: str = "rank"
) -> pl.DataFrame:
    """Add the rank of each row's split (a join, so it also works on empty frames)."""
    table = pl.DataFrame({split: list(ranks), rank: list(ranks.values())}, schema={split: pl.String, rank: pl.Int64})
    return frame.join(table, on=split, how="left", maintain_order="left")
