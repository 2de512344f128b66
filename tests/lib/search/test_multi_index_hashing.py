import numpy as np
import pytest

from dedup_pipeline.lib.search import multi_index_hashing
from dedup_pipeline.lib.search.hamming_join import hamming_pairs, hamming_pairs_between
from dedup_pipeline.lib.search.multi_index_hashing import HASH_BITS, Plan, _chunks, multi_index_pairs, plan_join


def planted_hashes(seed: int, count: int = 3000) -> np.ndarray:
    """Random 64-bit hashes with planted near-copies (0-10 flipped bits) and a large group of hashes
    sharing their low bits (one equal-key group of 200 in every chunk plan)."""
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 2**64, size=(count, 1), dtype=np.uint64)
    for source, copy in zip(range(0, 600), range(count - 600, count), strict=True):
        flips = rng.choice(HASH_BITS, size=int(rng.integers(0, 11)), replace=False)
        words[copy] = words[source] ^ np.bitwise_or.reduce(np.left_shift(np.uint64(1), flips.astype(np.uint64)))
    shared = 200
    low_bits = np.uint64((1 << 40) - 1)
    words[700 : 700 + shared] = (words[700 : 700 + shared] & ~low_bits) | (words[700] & low_bits)
    words[1000:1010] = words[5]  # exact copies
    return words


def as_set(i: np.ndarray, j: np.ndarray, d: np.ndarray) -> set[tuple[int, int, int]]:
    return set(zip(i.tolist(), j.tolist(), d.tolist(), strict=True))


@pytest.fixture(params=[1 << 22, 1000], ids=["one block", "many blocks"])
def candidate_block(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Candidate pairs generated at once: the default, and small enough to split the large group."""
    monkeypatch.setattr(multi_index_hashing, "CANDIDATE_BLOCK", request.param)


@pytest.mark.usefixtures("candidate_block")
@pytest.mark.parametrize("threshold", [0, 1, 2, 5, 8, 10])
def test_self_join_equals_brute_force(threshold: int) -> None:
    words = planted_hashes(threshold)
    fast = hamming_pairs(words, threshold, method="multi-index")
    brute = hamming_pairs(words, threshold, method="brute-force")
    assert as_set(*fast) == as_set(*brute)
    assert len(fast[0]) == len(brute[0]) > 600 * (threshold >= 10) + 45
    order = np.lexsort((fast[1], fast[0]))
    assert (order == np.arange(len(order))).all() and (fast[0] < fast[1]).all()


@pytest.mark.usefixtures("candidate_block")
@pytest.mark.parametrize("threshold", [1, 4, 8])
def test_rectangular_join_equals_brute_force(threshold: int) -> None:
    words = planted_hashes(100 + threshold)
    left, right = words[:2000], words[1500:]
    fast = hamming_pairs_between(left, right, threshold, method="multi-index")
    brute = hamming_pairs_between(left, right, threshold, method="brute-force")
    assert as_set(*fast) == as_set(*brute)
    assert len(fast[0]) == len(brute[0]) >= 500  # right[k] == left[1500 + k] at least


@pytest.mark.usefixtures("candidate_block")
@pytest.mark.parametrize(
    ("threshold", "chunk_count"), [(0, 3), (3, 3), (8, 3), (0, 4), (8, 4), (10, 4), (3, 6), (10, 6)]
)
def test_probing_the_small_side_equals_brute_force(threshold: int, chunk_count: int) -> None:
    words = planted_hashes(200 + threshold)
    left, right = words[-700:], words[:2600]  # the planted copies and the shared group on both sides
    chunks = _chunks(chunk_count, max(0, threshold + 1 - chunk_count))
    fast = multi_index_pairs(left[:, 0], right[:, 0], threshold, Plan(chunks, probe=True))
    brute = hamming_pairs_between(left, right, threshold, method="brute-force")
    assert as_set(*fast) == as_set(*brute)
    assert len(fast[0]) >= 40  # planted copies: about one in eleven unchanged
    order = np.lexsort((fast[1], fast[0]))
    assert (order == np.arange(len(order))).all()


def test_plan_prefers_brute_force_for_small_inputs_and_wide_thresholds() -> None:
    assert plan_join(50, 50, 8) is None
    assert plan_join(1_000_000, None, 40) is None
    plan = plan_join(1_000_000, None, 8)
    assert plan is not None and not plan.probe
    assert sum(chunk.bits for chunk in plan.chunks) == HASH_BITS
    assert sum(chunk.radius + 1 for chunk in plan.chunks) >= 8 + 1  # pigeonhole: exact at threshold 8


def test_plan_probes_when_one_side_is_far_smaller() -> None:
    assert plan_join(600, 480_000, 8).probe  # a drop's pHashes against the store's view hashes
    assert not plan_join(60_000, 60_000, 8).probe


def test_multi_index_refuses_wide_hashes() -> None:
    with pytest.raises(ValueError, match="64-bit"):
        hamming_pairs(np.zeros((10, 4), dtype=np.uint64), 3, method="multi-index")
