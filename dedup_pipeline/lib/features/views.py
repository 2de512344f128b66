"""Geometric views of each thumbnail (centre zooms, corner crops, small rotations) and their pHashes:
how copies that were cropped, padded or rotated are found and laid over their source.

Every hash and descriptor summarises the whole frame, so a copy with a few pixels cut from one side,
a border added or a tilt is far from its source under all of them: on the CIFAR suite, pHash <= 8
finds 0-21% of 2-4 px crops, 5-15% pads and 5-10 degree rotations. Hashing each image once more
per view fixes that where it is cheap: a cropped copy's hash is close to the matching zoomed view of
its source, a padded copy's zoomed view to its source's hash, and a rotated copy's hash to the
rotated view. So a view's hash within ``VIEW_THRESHOLD`` of another image's hash nominates the pair
(one Hamming join per view), and the view that brings a pair closest tells the verifier how to lay
one image over the other before its own small alignment search (``verification``).

Views are computed from the 32-pixel thumbnails (a thumbnail is exactly pHash's input size), so
they need no second decode and do not depend on the configured hashes; extraction hashes each
image's views once and stores them beside its thumbnail. Rotations fill the corners black, as
rotating augmentations do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from dedup_pipeline.lib.features.hashing import batch_hashes, dct_rows, mirror_key, pack_words
from dedup_pipeline.lib.features.thumbnails import THUMBNAIL_SIDE
from dedup_pipeline.lib.inputs.pictures import luma
from dedup_pipeline.lib.search.hamming_join import hamming_pairs_between
from dedup_pipeline.lib.search.pair_sets import ordered

VIEW_HASH = "phash"
VIEW_THRESHOLD = 8  # pHash bits: nominates 99-100% of the suite's crops, pads and rotations
VIEW_MARGIN = 2  # a view lays a pair over only when it brings the hashes this many bits closer
VIEW_BLOCK = 4096  # images hashed at once
PAIR_VIEW_BLOCK = 1 << 16  # pairs compared at once (60 bytes each)
IDENTITY, MIRROR = 0, 1  # columns of view_hashes before the views'


@dataclass(frozen=True)
class View:
    """An affine map from the view's pixel grid to the thumbnail's (normalised coordinates, as
    ``torch.nn.functional.affine_grid`` takes it: -1 and 1 are the picture's outer edges)."""

    name: str
    theta: tuple[tuple[float, float, float], tuple[float, float, float]]


def _zoom(name: str, keep: float, anchor_x: float = 0.0, anchor_y: float = 0.0) -> View:
    """The ``keep`` share of each side, centred, or pushed to a side by anchors of -1 or 1."""
    return View(name, ((keep, 0.0, anchor_x * (1 - keep)), (0.0, keep, anchor_y * (1 - keep))))


def _rotation(degrees: float) -> View:
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return View(f"rotate {degrees:+g}", ((cos, -sin, 0.0), (sin, cos, 0.0)))


# Corner crops at two sizes: a 2-pixel crop of a 32-pixel picture already moves pHash as far as a
# different picture (only 13% of them stay within 8 bits), and a 4-pixel crop is not matched by
# the 2-pixel view.
VIEWS: tuple[View, ...] = (
    *(_zoom(f"zoom {keep:g}", keep) for keep in (0.875, 0.8125, 0.75)),
    *(
        _zoom(f"corner {keep:g} {x:+d} {y:+d}", keep, x, y)
        for keep in (0.9375, 0.875)
        for x in (-1, 1)
        for y in (-1, 1)
    ),
    *(_rotation(degrees) for degrees in (-10, -5, 5, 10)),
)


@cache
def _sampling(side: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each view samples a side x side picture, as ``torch.nn.functional.grid_sample`` does
    (bilinear, zeros outside the picture, ``align_corners=False``): (len(VIEWS), side * side, 4)
    flat source pixel indices and their weights, per output pixel. Plain numpy, so extraction
    workers hash views without importing torch."""
    centres = (2 * np.arange(side) + 1) / side - 1  # pixel centres in normalised coordinates
    x, y = np.meshgrid(centres, centres)
    points = np.stack([x.ravel(), y.ravel(), np.ones(side * side)])
    indices, weights = [], []
    for view in VIEWS:
        source_x, source_y = ((np.asarray(view.theta) @ points + 1) * side - 1) / 2
        left, top = np.floor(source_x), np.floor(source_y)
        right_share, bottom_share = source_x - left, source_y - top
        corner_indices, corner_weights = [], []
        for row, row_weight in ((top, 1 - bottom_share), (top + 1, bottom_share)):
            for column, column_weight in ((left, 1 - right_share), (left + 1, right_share)):
                inside = (column >= 0) & (column < side) & (row >= 0) & (row < side)
                corner_indices.append(np.where(inside, row * side + column, 0))
                corner_weights.append(np.where(inside, row_weight * column_weight, 0.0))
        indices.append(np.stack(corner_indices, axis=1))
        weights.append(np.stack(corner_weights, axis=1))
    return np.stack(indices).astype(np.intp), np.stack(weights).astype(np.float32)


def warped(images: np.ndarray, views: np.ndarray) -> np.ndarray:
    """``images`` (n, side, side, channels) float32, each seen through ``VIEWS[views[k]]``; rows
    whose view is negative are returned unchanged."""
    chosen = np.flatnonzero(views >= 0)
    if not len(chosen):
        return images
    side, channels = images.shape[1], images.shape[3]
    indices, weights = (table[views[chosen]] for table in _sampling(side))  # (chosen, pixels, 4)
    flat = images[chosen].reshape(len(chosen), side * side, channels)
    rows = np.arange(len(chosen))[:, None]
    seen = sum(weights[:, :, k, None] * flat[rows, indices[:, :, k]] for k in range(4))
    out = images.copy()
    out[chosen] = seen.reshape(len(chosen), side, side, channels)
    return out


# The view transforms' weights are rounded to multiples of 2**-TRANSFORM_BITS and the product is taken
# in float64 on integers: 8-bit pixels times weights below 2**TRANSFORM_BITS, summed over 1,024
# pixels, stay below 2**53, so every partial sum is exact. A float32 product's rounding depends on
# how BLAS blocks the rows, so the same thumbnail hashed in another chunk could get another bit
# (2 of 6,000 CIFAR view hashes did between chunks of 128 and 37); an incremental run must hash an
# image as a from-scratch run does.
TRANSFORM_BITS = 24


@cache
def _view_transforms(side: int) -> np.ndarray:
    """(side * side, len(VIEWS) * (side // 4)**2) float64 integers: a flattened gray picture times
    this is, up to the scale 2**TRANSFORM_BITS, the low-frequency DCT block pHash thresholds of the
    picture seen through each view. Seeing through a view (bilinear sampling) and the DCT are both
    linear, so one matrix product does both; warped pixels are not rounded to 8 bits in between,
    which moves a bit in 4% of view hashes (0.09 bits per hash on CIFAR-10) and is 6x faster than
    warping and hashing each view."""
    dct = dct_rows(side, side // 4)
    low_frequencies = np.kron(dct, dct).T  # (pixels, hash bits): column u * hash_size + v is D[u] x D[v]
    indices, weights = _sampling(side)
    transforms = []
    for view_indices, view_weights in zip(indices, weights, strict=True):
        # each output pixel's DCT weights, spread over the source pixels it samples
        transform = np.zeros_like(low_frequencies)
        np.add.at(
            transform,
            view_indices.ravel(),
            (view_weights[:, :, None] * low_frequencies[:, None, :]).reshape(-1, low_frequencies.shape[1]),
        )
        transforms.append(transform)
    return np.round(np.concatenate(transforms, axis=1) * 2.0**TRANSFORM_BITS)


def view_hashes(thumbnails: np.ndarray) -> np.ndarray:
    """(n, 2 + len(VIEWS)) uint64 pHashes of each (side, side, 3) uint8 thumbnail: as it is
    (column IDENTITY, imagehash's pHash of the thumbnail's luma), mirrored (MIRROR), then through
    each view."""
    count, side = len(thumbnails), thumbnails.shape[1] if len(thumbnails) else THUMBNAIL_SIDE
    hash_size = side // 4
    bits = hash_size * hash_size
    out = np.zeros((count, 2 + len(VIEWS)), dtype=np.uint64)
    for start in range(0, count, VIEW_BLOCK):
        gray = luma(thumbnails[start : start + VIEW_BLOCK])
        plain = batch_hashes(gray, hash_size, [VIEW_HASH], [VIEW_HASH])
        block = slice(start, start + len(gray))
        out[block, IDENTITY], out[block, MIRROR] = plain[VIEW_HASH][:, 0], plain[mirror_key(VIEW_HASH)][:, 0]
        flat = gray.reshape(len(gray), side * side).astype(np.float64)
        coefficients = (flat @ _view_transforms(side)).reshape(len(gray) * len(VIEWS), bits)  # exact
        # pHash's median of an even count: bits above the lower median are the bits above the mean of the middle two
        lower_median = np.partition(coefficients, bits // 2 - 1, axis=1)[:, bits // 2 - 1 : bits // 2]
        out[block, 2:] = pack_words(coefficients > lower_median)[:, 0].reshape(len(gray), len(VIEWS))
    return out


def view_pairs(hashes: np.ndarray, threshold: int = VIEW_THRESHOLD) -> np.ndarray:
    """Unique pairs ``(i, j)``, ``i < j``, where a view of one image is within ``threshold`` bits of
    the other's hash (``hashes`` from :func:`view_hashes`), sorted. One join per view: joined all
    at once, the views of flat pictures share hash chunks with many others and the join stalls
    (68 s against 22 s for the 15 joins on CIFAR-10)."""
    found = [np.zeros((0, 2), dtype=np.int64)]
    for index in range(len(VIEWS)):
        i, j, _ = hamming_pairs_between(hashes[:, 2 + index : 3 + index], hashes[:, [IDENTITY]], threshold)
        found.append(np.stack([i, j], axis=1)[i != j])
    pairs = np.concatenate(found)
    return ordered(pairs[:, 0], pairs[:, 1])


def view_matches(
    queries: np.ndarray, dataset: np.ndarray, threshold: int = VIEW_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """``(pairs, distances)``: each ``(query, dataset image)`` where a view of the query is within
    ``threshold`` bits of the image's hash (both view hash arrays; queries are few), with the
    smallest such distance, sorted by pair. All views are joined at once: one join of a few
    thousand query views is far cheaper than one per view."""
    seen_row, image, distances = hamming_pairs_between(queries[:, 2:].reshape(-1, 1), dataset[:, [IDENTITY]], threshold)
    pairs = np.stack([seen_row // len(VIEWS), image], axis=1)
    order = np.lexsort((distances, pairs[:, 1], pairs[:, 0]))
    pairs, distances = pairs[order], distances[order]
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = np.any(pairs[1:] != pairs[:-1], axis=1)
    return pairs[first], distances[first]


def nominated(first: np.ndarray, second: np.ndarray, threshold: int = VIEW_THRESHOLD) -> np.ndarray:
    """Per row, whether :func:`view_pairs` pairs the image of ``first[k]`` (its view hashes) with
    that of ``second[k]``."""
    forward = np.bitwise_count(first[:, 2:] ^ second[:, [IDENTITY]]).min(axis=1, initial=64)
    backward = np.bitwise_count(second[:, 2:] ^ first[:, [IDENTITY]]).min(axis=1, initial=64)
    return np.minimum(forward, backward) <= threshold


@dataclass(frozen=True)
class PairViews:
    """Per pair: the smallest pHash distance over the plain, mirrored and viewed comparisons
    (``distance``), and how to lay the pair over: the view to see the first image of the pair
    ``(i, j)`` through, or -1 for none, after swapping the two images where ``swapped``."""

    distance: np.ndarray
    view: np.ndarray
    swapped: np.ndarray

    def selected(self, rows: np.ndarray) -> PairViews:
        """The views of the pairs ``rows`` selects (a mask or indices)."""
        return PairViews(self.distance[rows], self.view[rows], self.swapped[rows])

    def oriented(self, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pairs with the image to see through the view first."""
        return np.where(self.swapped, j, i), np.where(self.swapped, i, j)


def pair_views(hashes: np.ndarray, i: np.ndarray, j: np.ndarray) -> PairViews:
    """The :class:`PairViews` of pairs ``(i[k], j[k])``, in blocks of ``PAIR_VIEW_BLOCK`` pairs. A
    view is used only when it matches (within ``VIEW_THRESHOLD``) and brings the hashes
    ``VIEW_MARGIN`` bits closer than the plain or mirrored comparison: a copy that was not cropped
    or turned is compared as it is, and two different pictures get no more freedom to line up than
    they had."""
    distance, view = np.zeros(len(i), dtype=np.int64), np.full(len(i), -1, dtype=np.int64)
    swapped = np.zeros(len(i), dtype=bool)
    for start in range(0, len(i), PAIR_VIEW_BLOCK):
        a, b = i[start : start + PAIR_VIEW_BLOCK], j[start : start + PAIR_VIEW_BLOCK]
        plain = np.minimum.reduce(
            [
                np.bitwise_count(hashes[a, IDENTITY] ^ hashes[b, IDENTITY]),
                np.bitwise_count(hashes[a, IDENTITY] ^ hashes[b, MIRROR]),
                np.bitwise_count(hashes[a, MIRROR] ^ hashes[b, IDENTITY]),
            ]
        )
        # (pairs, views, 4): a view of the first vs the second, vs the mirrored second; and the reverse
        seen = np.stack(
            [
                np.bitwise_count(hashes[first, 2:] ^ hashes[second, other][:, None])
                for first, second in ((a, b), (b, a))
                for other in (IDENTITY, MIRROR)
            ],
            axis=2,
        ).reshape(len(a), -1)
        best = seen.argmin(axis=1)
        best_distance = np.take_along_axis(seen, best[:, None], axis=1)[:, 0]
        use = (best_distance <= VIEW_THRESHOLD) & (best_distance.astype(np.int64) + VIEW_MARGIN <= plain)
        block = slice(start, start + len(a))
        distance[block] = np.minimum(plain, best_distance)
        view[block] = np.where(use, best // 4, -1)
        swapped[block] = use & (best % 4 >= 2)
    return PairViews(distance, view, swapped)
