import numpy as np
import pytest

from dedup_pipeline.lib.search import look_alikes
from dedup_pipeline.lib.search.look_alikes import (
    QUANTUM,
    LookAlikeLists,
    LookAlikeSpace,
    fit_space,
    look_alike_lists,
    nearest,
    updated_lists,
)


def brute_force(vectors: np.ndarray, count: int) -> np.ndarray:
    """Each row's ``count`` most similar other rows, ties to the lower position."""
    similarity = vectors.astype(np.int64) @ vectors.astype(np.int64).T
    result = np.full((len(vectors), count), -1)
    for row in range(len(vectors)):
        others = [k for k in range(len(vectors)) if k != row]
        ranked = sorted(others, key=lambda k: (-similarity[row, k], k))[:count]
        result[row, : len(ranked)] = ranked
    return result


def tied_vectors(count: int, seed: int) -> np.ndarray:
    """Quantized unit vectors with many exact ties: repeated rows and a cluster of identical ones."""
    rng = np.random.default_rng(seed)
    space = fit_space(rng.normal(size=(300, 80)), dimension=16)
    vectors = space.vectors(rng.normal(size=(count, 80)))
    vectors[count // 2 : count // 2 + 25] = vectors[0]  # 26 identical: ties past what one search fetches
    vectors[-5:] = vectors[1]
    return vectors


def test_lists_are_exact_with_ties_broken_by_position() -> None:
    vectors = tied_vectors(120, seed=1)
    lists = look_alike_lists(vectors, count=10)
    assert np.array_equal(lists.neighbours, brute_force(vectors, 10))
    expected = np.take_along_axis(vectors.astype(np.int64) @ vectors.astype(np.int64).T, lists.neighbours, axis=1)
    assert np.array_equal(lists.similarities, expected)


def test_projected_vectors_make_exact_float32_dot_products() -> None:
    rng = np.random.default_rng(2)
    space = fit_space(rng.normal(size=(500, 768)))
    descriptors = rng.normal(size=(50, 768))
    vectors = space.vectors(descriptors)
    assert vectors.shape == (50, 64) and np.abs(vectors).max() <= QUANTUM
    exact = vectors.astype(np.int64) @ vectors.astype(np.int64).T
    assert np.array_equal(vectors.astype(np.float32) @ vectors.astype(np.float32).T, exact.astype(np.float32))
    assert np.array_equal(space.vectors(descriptors[17:18]), vectors[17:18])  # alone as in a block
    restored = LookAlikeSpace.from_bytes(space.to_bytes())
    assert np.array_equal(restored.components, space.components) and np.array_equal(restored.mean, space.mean)


def test_a_small_dataset_has_short_lists() -> None:
    vectors = tied_vectors(40, seed=3)[:4]  # fewer images than a list holds
    lists = look_alike_lists(vectors, count=10)
    assert (lists.neighbours[:, :3] >= 0).all() and (lists.neighbours[:, 3:] == -1).all()
    assert nearest(vectors[:0], vectors).neighbours.shape == (0, 10)


@pytest.mark.parametrize("similarity_block", [1 << 24, 300], ids=["one block", "many blocks"])
def test_updated_lists_equal_lists_from_scratch_after_additions_and_removals(
    similarity_block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(look_alikes, "SIMILARITY_BLOCK", similarity_block)
    rng = np.random.default_rng(4)
    universe = tied_vectors(400, seed=5)
    live = np.sort(rng.choice(400, size=60, replace=False))  # universe rows, in "path" order
    lists = look_alike_lists(universe[live])
    for step in range(8):
        removed = rng.choice(live, size=rng.integers(0, 6), replace=False)
        added = rng.choice(np.setdiff1d(np.arange(400), live), size=rng.integers(1, 40), replace=False)
        next_live = np.sort(np.concatenate([np.setdiff1d(live, removed), added]))
        # the old lists, translated to the new positions (a retired neighbour makes the list stale)
        position = {int(row): k for k, row in enumerate(next_live)}
        old_rows = {int(row): k for k, row in enumerate(live)}
        neighbours = np.full((len(next_live), 10), -1)
        similarities = np.zeros((len(next_live), 10), dtype=np.int32)
        stale = np.zeros(len(next_live), dtype=bool)
        new = np.isin(next_live, added)
        for k, row in enumerate(next_live):
            if new[k]:
                continue
            old = old_rows[int(row)]
            entries = [int(live[n]) if n >= 0 else -1 for n in lists.neighbours[old]]
            stale[k] = any(entry >= 0 and entry not in position for entry in entries)
            neighbours[k] = [position.get(entry, -1) if entry >= 0 else -1 for entry in entries]
            similarities[k] = lists.similarities[old]
        lists = updated_lists(LookAlikeLists(neighbours, similarities), universe[next_live], new, stale)
        scratch = look_alike_lists(universe[next_live])
        assert np.array_equal(lists.neighbours, scratch.neighbours), step
        assert np.array_equal(lists.similarities, scratch.similarities), step
        live = next_live


def test_pairs_are_each_listed_pair_once() -> None:
    lists = LookAlikeLists(np.array([[1, 2], [0, -1], [0, 1]]), np.zeros((3, 2), dtype=np.int32))
    assert lists.pairs().tolist() == [[0, 1], [0, 2], [1, 2]]
