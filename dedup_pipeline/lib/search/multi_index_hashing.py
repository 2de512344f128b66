"""Exact Hamming range join of 64-bit hashes by multi-index hashing, as sorts and equi-joins.

Split the 64 bits into ``m`` chunks. If two hashes differ in at most ``t`` bits, then for any
radii ``r_1..r_m`` with ``sum(r_c + 1) >= t + 1`` some chunk ``c`` differs in at most ``r_c``
bits (generalised pigeonhole). So every pair within ``t`` shares, in some chunk, a key from a
small set of bit-flip variants, and the candidates are equal-key groups of a sort:

- radius 0: the chunk itself on both sides;
- radius 1: every one-bit variant on one side (role "query") against the chunk on the other;
- radius 2: every one-bit variant on both sides (two differing bits meet half way).

Candidates are checked on all 64 bits, so the result is exact: the same pairs as brute force.
For N random hashes the work is about N * (chunk bits) entries and a few candidates per entry,
against N^2 / 2 comparisons for brute force; :func:`plan_join` estimates both and callers fall
back to brute force where it is cheaper (small N, large thresholds).

A few hashes against many (a drop's new images against the store: 600 against 60,000, or 600
pHashes against 480,000 view hashes) are joined by probing instead: only the few are expanded,
into every variant within their chunk's radius (up to two bits), sorted, and each of the many
looks its chunks up there by binary search. Nothing of the large side is sorted or expanded,
which is most of the work of the sort join when the sides differ a hundredfold.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import numpy as np

from dedup_pipeline.lib.search.pair_sets import unique_pairs

HASH_BITS = 64
MAX_CHUNKS = 8
CANDIDATE_BLOCK = 1 << 22  # candidate pairs generated at once
CANDIDATE_COST = 8.0  # a checked candidate costs about this many brute-force comparisons
PRESENCE_TABLE_BITS = 24  # chunks of at most this many bits get a table of the keys present (16 MB)


@dataclass(frozen=True)
class Chunk:
    low: int  # first bit
    bits: int
    radius: int  # 0, 1 or 2


@dataclass(frozen=True)
class Plan:
    chunks: list[Chunk]
    probe: bool  # expand the left side only and look the right side's chunks up (see the module)


def _chunks(count: int, radii_total: int) -> list[Chunk] | None:
    if radii_total > 2 * count:
        return None
    widths = [HASH_BITS // count + (1 if c < HASH_BITS % count else 0) for c in range(count)]
    radii = [radii_total // count + (1 if c < radii_total % count else 0) for c in range(count)]
    lows = np.concatenate([[0], np.cumsum(widths)[:-1]]).tolist()
    return [Chunk(int(low), width, radius) for low, width, radius in zip(lows, widths, radii, strict=True)]


def _estimated_cost(chunks: list[Chunk], left: int, right: int) -> float:
    """Sort entries plus expected random-collision candidates (uniform hashes), in comparisons."""
    cost = 0.0
    for chunk in chunks:
        keys = 2.0**chunk.bits
        variants = chunk.bits + 1.0
        if chunk.radius == 0:
            entries, candidates = left + right, left * right / keys
        elif chunk.radius == 1:
            entries, candidates = left * variants + right, left * variants * right / keys
        else:
            entries, candidates = (left + right) * variants, left * right * variants * variants / keys
        cost += entries * np.log2(max(entries, 2.0)) / 4 + candidates * CANDIDATE_COST
    return cost


def _variants(bits: int, radius: int) -> int:
    """Keys within ``radius`` (at most 2) bits of a ``bits``-bit key."""
    return 1 + (bits if radius >= 1 else 0) + (bits * (bits - 1) // 2 if radius >= 2 else 0)


def _probe_cost(chunks: list[Chunk], left: int, right: int) -> float:
    """Sorting the left side's variants, a binary search of each right entry, and the expected
    random-collision candidates (uniform hashes), in comparisons."""
    cost = 0.0
    for chunk in chunks:
        entries = left * float(_variants(chunk.bits, chunk.radius))
        candidates = entries * right / 2.0**chunk.bits
        cost += (entries + 2 * right) * np.log2(max(entries, 2.0)) / 4 + candidates * CANDIDATE_COST
    return cost


def plan_join(left: int, right: int | None, threshold: int) -> Plan | None:
    """The cheapest plan for joining ``left`` hashes with ``right`` (None: a self-join of ``left``)
    at ``threshold``, or None when brute force is expected to be cheaper."""
    self_join = right is None
    right = left if self_join else right
    best, best_cost = None, float(left) * right
    for count in range(1, MAX_CHUNKS + 1):
        chunks = _chunks(count, max(0, threshold + 1 - count))
        if chunks is None:
            continue
        options = [(Plan(chunks, probe=False), _estimated_cost(chunks, left, right))]
        if not self_join:
            options.append((Plan(chunks, probe=True), _probe_cost(chunks, left, right)))
        for plan, cost in options:
            if cost < best_cost:
                best, best_cost = plan, cost
    return best


def _interleaved(values: np.ndarray, chunk_count: int) -> np.ndarray:
    """``values`` with their bits permuted so that each contiguous chunk of the plan holds every
    ``chunk_count``-th bit of the hash. Distances do not change; the chunks become alike. Perceptual
    hashes order their bits by frequency, and the low-frequency bits are the most biased and
    correlated: left contiguous, they share one chunk, whose keys then collide far more often
    than random keys do (on CIFAR-10's pHash views, twice the candidates). The permutation is
    applied a byte at a time through lookup tables (a drop's join permutes every stored hash:
    891,000 view hashes in 0.03 s, against 0.3 s bit by bit)."""
    if chunk_count == 1:
        return values
    tables = _interleaving_tables(chunk_count)
    octets = values.view(np.uint8).reshape(len(values), 8)  # little-endian: byte k holds bits 8k..8k+7
    result = np.zeros(len(values), dtype=np.uint64)
    for position in range(8):
        result |= tables[position][octets[:, position]]
    return result


@cache
def _interleaving_tables(chunk_count: int) -> np.ndarray:
    """(8, 256) uint64: where each byte value at each byte position of a hash lands."""
    order = np.concatenate([np.arange(first, HASH_BITS, chunk_count) for first in range(chunk_count)])
    destination = np.empty(HASH_BITS, dtype=np.uint64)
    destination[order] = np.arange(HASH_BITS, dtype=np.uint64)  # bit order[k] goes to bit k
    tables = np.zeros((8, 256), dtype=np.uint64)
    for position in range(8):
        for bit in range(8):
            has_bit = (np.arange(256) >> bit) & 1 == 1
            tables[position, has_bit] |= np.uint64(1) << destination[8 * position + bit]
    return tables


def _chunk_keys(values: np.ndarray, chunk: Chunk) -> np.ndarray:
    return (values >> np.uint64(chunk.low)) & np.uint64((1 << chunk.bits) - 1)


@cache
def _flips(bits: int, radius: int) -> np.ndarray:
    """Every mask of at most ``radius`` (0-2) of ``bits`` bits, the empty mask first."""
    single = [1 << bit for bit in range(bits)] if radius >= 1 else []
    double = [(1 << a) | (1 << b) for a in range(bits) for b in range(a + 1, bits)] if radius >= 2 else []
    return np.array([0, *single, *double], dtype=np.uint64)


def _entries(values: np.ndarray, ids: np.ndarray, chunk: Chunk, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """(key, id) entries of a chunk: each value's chunk and, with ``radius``, every variant of it
    within that many bits."""
    part = _chunk_keys(values, chunk)
    if not radius:
        return part, ids
    flips = _flips(chunk.bits, radius)
    return (part[:, None] ^ flips[None, :]).ravel(), np.repeat(ids, len(flips))


def _key_order(keys: np.ndarray, key_bits: int) -> np.ndarray:
    """A stable argsort of chunk keys (< 2**key_bits). Keys and positions are packed into one
    uint64 and sorted by value where they fit, which is several times faster than ``argsort``."""
    position_bits = max(1, (len(keys) - 1).bit_length())
    if key_bits + position_bits > HASH_BITS:
        return np.argsort(keys, kind="stable")
    packed = (keys << np.uint64(position_bits)) | np.arange(len(keys), dtype=np.uint64)
    packed.sort()
    return (packed & np.uint64((1 << position_bits) - 1)).astype(np.intp)


def _range_blocks(firsts: np.ndarray, counts: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(k, first[k] + offset)`` for every ``offset < counts[k]``, as blocks of about
    ``CANDIDATE_BLOCK`` pairs however large one range is."""
    positions = np.flatnonzero(counts > 0)
    firsts, counts = firsts[positions], counts[positions].astype(np.int64)
    ends = np.cumsum(counts)
    first = 0
    while first < len(positions):
        start = ends[first] - counts[first]
        last = max(first + 1, int(np.searchsorted(ends, start + CANDIDATE_BLOCK, side="right")))
        block = counts[first:last]
        offsets = np.arange(int(ends[last - 1] - start)) - np.repeat(ends[first:last] - block - start, block)
        yield np.repeat(positions[first:last], block), np.repeat(firsts[first:last], block) + offsets
        first = last


def _group_candidates(
    keys: np.ndarray, ids: np.ndarray, roles: np.ndarray | None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks of entry pairs with equal keys and different roles, from entries sorted by key and
    then role (``roles`` 0 or 1, or None when every entry is its own role).

    Each entry's partners are a range of the sort: the entries after it in its key group, or its
    group's role-1 entries for a role-0 entry. Pairs are generated for a run of entries at a time
    so that a block holds about ``CANDIDATE_BLOCK`` pairs, however large a group is (views of flat
    or black-cornered pictures share chunks)."""
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    sizes = np.diff(np.concatenate([starts, [len(keys)]]))
    group_ends = np.repeat(starts + sizes, sizes)
    if roles is None:
        partners_from = np.arange(1, len(keys) + 1)
        partner_counts = group_ends - partners_from
    else:
        role_one_starts = starts + np.add.reduceat(roles == 0, starts) if len(keys) else starts
        partners_from = np.repeat(role_one_starts, sizes)
        partner_counts = np.where(roles == 0, group_ends - partners_from, 0)
    for entries, partners in _range_blocks(partners_from, partner_counts):
        yield ids[entries], ids[partners]


def _probe_pairs(left: np.ndarray, right: np.ndarray, threshold: int, chunks: list[Chunk]) -> np.ndarray:
    """(left, right) index pairs within ``threshold``: the left side's chunk variants sorted, each
    right value's chunks looked up among them (see the module). Values are interleaved already."""
    ids = np.arange(len(left), dtype=np.int32 if len(left) < 2**31 else np.int64)
    found = [np.zeros((0, 2), dtype=np.int64)]
    for chunk in chunks:
        keys, owners = _entries(left, ids, chunk, chunk.radius)
        order = _key_order(keys, chunk.bits)
        keys, owners = keys[order], owners[order]
        probes = _chunk_keys(right, chunk)
        hits = np.arange(len(probes))
        if chunk.bits <= PRESENCE_TABLE_BITS:
            # most probes find nothing: a table of the keys present skips their binary searches
            present = np.zeros(1 << chunk.bits, dtype=bool)
            present[keys] = True
            hits = np.flatnonzero(present[probes])
        firsts = np.searchsorted(keys, probes[hits], side="left")
        counts = np.searchsorted(keys, probes[hits], side="right") - firsts
        for hit, entries in _range_blocks(firsts, counts):
            a, b = owners[entries], hits[hit]
            keep = np.bitwise_count(left[a] ^ right[b]) <= threshold
            found.append(np.stack([a[keep], b[keep]], axis=1).astype(np.int64))
    return np.concatenate(found)


def multi_index_pairs(
    left: np.ndarray, right: np.ndarray | None, threshold: int, plan: Plan
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, distance)`` of every pair within ``threshold``, sorted by ``(i, j)``: ``i < j`` in
    ``left`` when ``right`` is None (a self-join), else ``left[i]`` against ``right[j]``.
    ``left`` and ``right`` are 1-D uint64."""
    chunks = plan.chunks
    if plan.probe:
        if right is None:
            raise ValueError("a self-join cannot probe")
        left_values = _interleaved(np.ascontiguousarray(left, dtype=np.uint64), len(chunks))
        right_values = _interleaved(np.ascontiguousarray(right, dtype=np.uint64), len(chunks))
        pairs = unique_pairs(_probe_pairs(left_values, right_values, threshold, chunks))
        i, j = pairs[:, 0], pairs[:, 1]
        return i, j, np.bitwise_count(left_values[i] ^ right_values[j]).astype(np.int64)
    self_join = right is None
    values = left if self_join else np.concatenate([left, right])
    values = _interleaved(np.ascontiguousarray(values, dtype=np.uint64), len(chunks))
    ids = np.arange(len(values), dtype=np.int32 if len(values) < 2**31 else np.int64)  # entries are many: keep small
    side = np.zeros(len(values), dtype=np.uint8)
    if not self_join:
        side[len(left) :] = 1
    found: list[np.ndarray] = [np.zeros((0, 2), dtype=np.int64)]
    for chunk in chunks:
        if chunk.radius == 1:
            # queries (role 0) are one-bit variants; in a self-join every row is also a key (role 1)
            queries = ids if self_join else ids[side == 0]
            keys = ids if self_join else ids[side == 1]
            query_keys, query_ids = _entries(values[queries], queries, chunk, radius=1)
            key_keys, key_ids = _entries(values[keys], keys, chunk, radius=0)
            all_keys = np.concatenate([query_keys, key_keys])
            all_ids = np.concatenate([query_ids, key_ids])
            roles = np.concatenate([np.zeros(len(query_ids), np.uint8), np.ones(len(key_ids), np.uint8)])
        else:
            all_keys, all_ids = _entries(values, ids, chunk, radius=1 if chunk.radius == 2 else 0)
            # self-join: every entry its own role (ids differ within a key group); else the side
            roles = None if self_join else side[all_ids]
        if roles is None:
            order = _key_order(all_keys, chunk.bits)
        else:
            order = _key_order((all_keys << np.uint64(1)) | roles.astype(np.uint64), chunk.bits + 1)
        sorted_roles = None if roles is None else roles[order]
        for a, b in _group_candidates(all_keys[order], all_ids[order], sorted_roles):
            keep = (np.bitwise_count(values[a] ^ values[b]) <= threshold) & (a != b)
            a, b = a[keep], b[keep]
            if self_join:
                a, b = np.minimum(a, b), np.maximum(a, b)
            else:
                a, b = np.where(side[a] == 0, a, b), np.where(side[a] == 0, b, a) - len(left)
            found.append(np.stack([a, b], axis=1).astype(np.int64))
    pairs = unique_pairs(np.concatenate(found))
    i, j = pairs[:, 0], pairs[:, 1]
    other = values if self_join else values[len(left) :]
    return i, j, np.bitwise_count(values[i] ^ other[j]).astype(np.int64)
