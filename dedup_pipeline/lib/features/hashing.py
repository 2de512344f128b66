"""Perceptual hashes, computed in batches from one small grayscale picture per image, packed into
64-bit words; and exact content hashes.

Every perceptual hash starts from the same *hash base*: the picture in grayscale, Lanczos-resized
to ``4 * hash_size`` square, which is exactly the input imagehash's pHash uses. A worker resizes
each decoded picture once; a batch of bases is then hashed with a few matrix products:

* pHash: imagehash's (the DCT as matrix products; its low ``hash_size`` square above its median);
* aHash: the base resized to ``hash_size`` square, above its mean;
* dHash: left-to-right increases along the rows of the base resized to ``hash_size + 1`` by
  ``hash_size``;
* wHash: the base's ``hash_size`` square of block sums above their median (imagehash's Haar LL
  band, whose coefficients are block sums; it removes the mean, which moves the median alike).

The resizes reproduce Pillow's 8-bit Lanczos exactly (fixed-point weights, rounding after each
pass), so on a picture of the base's size pHash, aHash and dHash equal imagehash's bit for bit
and wHash differs only where block sums tie exactly. On larger pictures imagehash resizes the full
picture separately for aHash, dHash and wHash (to its largest power-of-two side); deriving them
from the base costs one resize instead of four and moves few bits (``tests/lib/test_hashing.py``
bounds how many). Mirrored hashes are the hashes of the left-right flipped base, which is the base
of the flipped picture (Pillow's Lanczos commutes with mirroring); they are read off the same
matrix products, since mirroring only reverses or flips the sign of response columns.

A hash of ``hash_size**2`` bits is read as one big-endian integer, the way imagehash prints it in
hex, and split into 64-bit words from the most significant end. With the default hash size 8 a
hash is exactly one word, and a pHash word equals ``int(str(imagehash.phash(image)), 16)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

from dedup_pipeline.lib.inputs.pictures import Picture, luma, resized, rgb_pixels

BASE_FACTOR = 4  # imagehash's pHash "highfreq_factor": the base is 4 * hash_size pixels square


def hash_base_side(hash_size: int) -> int:
    return BASE_FACTOR * hash_size


def hash_base(picture: Picture, hash_size: int) -> np.ndarray:
    """The (side, side) uint8 grayscale picture every perceptual hash of ``picture`` is computed from."""
    return resized(luma(rgb_pixels(picture)), hash_base_side(hash_size), Image.Resampling.LANCZOS)


class HashBases:
    """The :func:`hash_base` of each picture of a batch, added one at a time. Pictures already of
    the base's size (all of CIFAR) are converted to grayscale together at the end, sparing each its
    own few array operations; larger ones are reduced as they come, so none is held."""

    def __init__(self, hash_size: int) -> None:
        self.hash_size, self.side = hash_size, hash_base_side(hash_size)
        self.bases: list[np.ndarray | None] = []
        self.base_sized: list[np.ndarray] = []

    def add(self, picture: Picture) -> None:
        pixels = rgb_pixels(picture)
        if pixels.shape[:2] == (self.side, self.side):
            self.bases.append(None)
            self.base_sized.append(pixels)
        else:
            self.bases.append(hash_base(pixels, self.hash_size))

    def stacked(self) -> np.ndarray:
        """(n, side, side) uint8, in the order added."""
        if not self.bases:
            return np.zeros((0, self.side, self.side), dtype=np.uint8)
        grays = iter(luma(np.stack(self.base_sized)) if self.base_sized else [])
        return np.stack([next(grays) if base is None else base for base in self.bases])


@cache
def dct_rows(side: int, count: int) -> np.ndarray:
    """The first ``count`` rows of scipy's unnormalised DCT-II matrix for ``side`` samples."""
    frequency, position = np.arange(count)[:, None], np.arange(side)[None, :]
    return 2.0 * np.cos(np.pi * frequency * (2 * position + 1) / (2 * side))


PILLOW_PRECISION_BITS = 22  # Pillow's fixed-point resampling of 8-bit pictures


@cache
def _lanczos_rows(source: int, target: int) -> np.ndarray:
    """(target, source) Lanczos-3 resampling weights, antialiased when shrinking, in Pillow's 8-bit
    fixed point (weights as Pillow computes them, scaled by 2**22 and rounded away from zero)."""
    scale = source / target
    stretch = max(scale, 1.0)
    offsets = (np.arange(source)[None, :] + 0.5 - (np.arange(target)[:, None] + 0.5) * scale) / stretch
    weights = np.sinc(offsets) * np.sinc(offsets / 3.0) * (np.abs(offsets) < 3.0)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.trunc(weights * (1 << PILLOW_PRECISION_BITS) + np.copysign(0.5, weights))


def _to_8bit(sums: np.ndarray) -> np.ndarray:
    """Round fixed-point sums to 0..255 as Pillow does after each resampling pass (in a new array;
    scaling by a power of two is exact)."""
    scaled = (sums + (1 << (PILLOW_PRECISION_BITS - 1))) * (1.0 / (1 << PILLOW_PRECISION_BITS))
    np.floor(scaled, out=scaled)
    return np.clip(scaled, 0, 255, out=scaled)


@cache
def _block_rows(side: int, count: int) -> np.ndarray:
    """(count, side) ones over consecutive blocks: ``rows @ picture @ rows.T`` sums the blocks."""
    return np.kron(np.eye(count), np.ones(side // count))


@dataclass(frozen=True)
class _Filters:
    """A hash's response to a base is ``rows @ base @ columns.T``; with ``rounded``, Pillow's 8-bit
    Lanczos resize: the horizontal pass (columns) is rounded before the vertical one, and after it."""

    rows: np.ndarray  # (hash_size, side)
    columns: np.ndarray  # (width, side)
    rounded: bool


@cache
def _filters(side: int, hash_size: int) -> dict[str, _Filters]:
    lanczos = _lanczos_rows(side, hash_size)
    dct, blocks = dct_rows(side, hash_size), _block_rows(side, hash_size)
    return {
        "phash": _Filters(dct, dct, rounded=False),  # the low frequencies of the DCT
        "dhash": _Filters(lanczos, _lanczos_rows(side, hash_size + 1), rounded=True),
        "ahash": _Filters(lanczos, lanczos, rounded=True),
        "whash": _Filters(blocks, blocks, rounded=False),  # the Haar LL band: block sums
    }


def _responses(pixels: np.ndarray, hash_size: int, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Each named hash's (n, hash_size, width) response to every base of an (n, side, side) float64
    stack. The horizontal passes of all of them are one matrix product over all the stack's rows
    (a few large products instead of many tiny per-picture ones); each vertical pass is a batched
    product with its rows."""
    count, side = pixels.shape[0], pixels.shape[1]
    filters = [_filters(side, hash_size)[name] for name in names]
    columns = np.concatenate([spec.columns for spec in filters]) if filters else np.zeros((0, side))
    horizontal = (pixels.reshape(count * side, side) @ columns.T).reshape(count, side, len(columns))
    responses, start = {}, 0
    for name, spec in zip(names, filters, strict=True):
        part = horizontal[:, :, start : start + len(spec.columns)]
        start += len(spec.columns)
        responses[name] = _to_8bit(np.matmul(spec.rows, _to_8bit(part))) if spec.rounded else np.matmul(spec.rows, part)
    return responses


def _row_medians(flat: np.ndarray) -> np.ndarray:
    """np.median along rows (as a column), from one partial sort."""
    half = flat.shape[1] // 2
    if flat.shape[1] % 2:
        return np.partition(flat, half, axis=1)[:, half : half + 1]
    middle = np.partition(flat, (half - 1, half), axis=1)
    return (middle[:, half - 1 : half] + middle[:, half : half + 1]) / 2


def _flat(response: np.ndarray) -> np.ndarray:
    return response.reshape(len(response), response.shape[1] * response.shape[2])


def _above_median(response: np.ndarray) -> np.ndarray:
    flat = _flat(response)
    return flat > _row_medians(flat)


def _above_mean(response: np.ndarray) -> np.ndarray:
    flat = _flat(response)
    return flat > flat.mean(axis=1, keepdims=True)


def _increases(response: np.ndarray) -> np.ndarray:
    return _flat(response[:, :, 1:] > response[:, :, :-1])


PERCEPTUAL_HASHES: Mapping[str, Callable[[np.ndarray], np.ndarray]] = {
    "phash": _above_median,  # the DCT's low frequencies above their median
    "dhash": _increases,  # left-to-right increases along the rows
    "ahash": _above_mean,
    "whash": _above_median,
}


def _mirrored(name: str, response: np.ndarray) -> np.ndarray:
    """The response to the left-right mirrored base. Mirroring reverses the columns of every
    response whose column filter is symmetric (resampling, block sums); it multiplies DCT
    coefficient k by (-1)**k."""
    if name == "phash":
        return response * (-1.0) ** np.arange(response.shape[2])
    return response[:, :, ::-1]


def words_per_hash(hash_size: int) -> int:
    """How many 64-bit words hold one hash of ``hash_size**2`` bits."""
    return -(-(hash_size * hash_size) // 64)


def validate_hash_settings(hash_size: int, algorithms: list[str]) -> None:
    if not algorithms:
        raise ValueError("at least one perceptual hash algorithm is needed")
    if hash_size < 2:
        raise ValueError(f"hash_size must be at least 2, got {hash_size}")
    unknown = set(algorithms) - set(PERCEPTUAL_HASHES)
    if unknown:
        raise ValueError(f"unknown hash algorithm(s) {sorted(unknown)}; known: {sorted(PERCEPTUAL_HASHES)}")


def pack_words(bits: np.ndarray) -> np.ndarray:
    """(n, bits) booleans -> (n, words) uint64, each row one big-endian integer split into words,
    most significant first (so the padding sits on the most significant side)."""
    count, width = bits.shape
    padded = np.concatenate([np.zeros((count, -width % 64), dtype=bool), bits.astype(bool)], axis=1)
    return np.packbits(padded, axis=1).view(">u8").astype(np.uint64).reshape(count, -(-width // 64))


MIRROR_SUFFIX = "_mirror"


def mirror_key(algorithm: str) -> str:
    """Name of the hash of the left-right mirrored picture."""
    return f"{algorithm}{MIRROR_SUFFIX}"


def batch_hashes(
    bases: Sequence[np.ndarray], hash_size: int, algorithms: Sequence[str], mirrored: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """Hash :func:`hash_base` pictures (a sequence or an (n, side, side) stack) with each algorithm:
    name -> (n, words) uint64. Algorithms in ``mirrored`` also hash the left-right mirrored
    pictures, under :func:`mirror_key` names, so that flipped copies can be matched."""
    side = hash_base_side(hash_size)
    pixels = np.asarray(bases, dtype=np.float64) if len(bases) else np.zeros((0, side, side))
    if pixels.ndim != 3 or pixels.shape[1:] != (side, side):
        raise ValueError(f"hash bases must be {side} x {side} pictures for hash size {hash_size}")
    responses = _responses(pixels, hash_size, list(dict.fromkeys([*algorithms, *mirrored])))
    hashes = {name: pack_words(PERCEPTUAL_HASHES[name](responses[name])) for name in algorithms}
    for name in mirrored:
        hashes[mirror_key(name)] = pack_words(PERCEPTUAL_HASHES[name](_mirrored(name, responses[name])))
    return hashes


def perceptual_hashes(
    picture: Picture, hash_size: int, algorithms: Sequence[str], mirrored: Sequence[str] = ()
) -> dict[str, tuple[int, ...]]:
    """One picture's hashes (as :func:`batch_hashes`), each a tuple of 64-bit words."""
    hashes = batch_hashes(hash_base(picture, hash_size)[None], hash_size, algorithms, mirrored)
    return {name: tuple(int(word) for word in words[0]) for name, words in hashes.items()}


def content_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pixel_digest(picture: Picture) -> str:
    """Digest of the decoded RGB pixels and shape: equal for a picture re-saved losslessly."""
    pixels = rgb_pixels(picture)
    digest = hashlib.sha256(f"{pixels.shape[1]}x{pixels.shape[0]}:".encode())
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()
