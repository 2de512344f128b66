"""Which split wins when a duplicate spans splits.

Splits earlier in the priority list keep their images; later ("evaluation") splits drop the
copies. Splits not in the list come after the listed ones, alphabetically.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

DEFAULT_SPLIT_PRIORITY: tuple[str, ...] = ("train", "training", "val", "valid", "validation", "dev", "test", "testing")


def split_ranks(splits: Iterable[str], priority: Sequence[str] = DEFAULT_SPLIT_PRIORITY) -> dict[str, int]:
    """Rank every split present: 0 is the split that keeps its images first."""
    present = sorted(set(splits))
    listed = [split for split in priority if split in present]
    unlisted = [split for split in present if split not in priority]
    return {split: rank for rank, split in enumerate(listed + unlisted)}
