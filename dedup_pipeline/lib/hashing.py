"""Perceptual hashes (imagehash's semantics; whash up to exact ties, see :func:`haar_whash`) packed
into 64-bit words, and exact content hashes.

A hash of ``hash_size**2`` bits is read as one big-endian integer, the way imagehash prints it in
hex, and split into 64-bit words from the most significant end. With the default hash size 8 a
hash is exactly one word whose value equals ``int(str(imagehash.phash(image)), 16)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

import imagehash
import numpy as np
from PIL import Image, ImageOps


def haar_whash(image: Image.Image, hash_size: int = 8) -> imagehash.ImageHash:
    """imagehash's ``whash`` (Haar, largest LL removed) without its two full wavelet transforms.

    imagehash resizes to a power-of-two square, removes the largest Haar LL band (the mean), and
    thresholds the LL band ``hash_size`` wide at its median. A Haar LL coefficient is a block sum
    scaled by a constant, and removing the mean shifts every coefficient and the median alike, so the
    bits are the block sums above their median: the same bits, about 10x faster. They can differ
    only where coefficients tie exactly (a flat picture), where imagehash's come from rounding noise.
    """
    scale = max(2 ** int(np.log2(min(image.size))), hash_size)
    if hash_size & (hash_size - 1) or hash_size > scale:
        raise ValueError(f"whash needs a power-of-two hash_size at most {scale}, got {hash_size}")
    pixels = np.asarray(image.convert("L").resize((scale, scale), Image.Resampling.LANCZOS), dtype=np.float64)
    block = scale // hash_size
    low = pixels.reshape(hash_size, block, hash_size, block).sum(axis=(1, 3))
    return imagehash.ImageHash(low > np.median(low))


PERCEPTUAL_HASHES: Mapping[str, Callable[..., imagehash.ImageHash]] = {
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "ahash": imagehash.average_hash,
    "whash": haar_whash,
}


def words_per_hash(hash_size: int) -> int:
    """How many 64-bit words hold one hash of ``hash_size**2`` bits."""
    return -(-(hash_size * hash_size) // 64)


def validate_hash_settings(hash_size: int, algorithms: list[str]) -> None:
    if not algorithms:
        raise ValueError("at least one perceptual hash algorithm is needed")
    if hash_size < 2:
        raise ValueError(f"hash_size must be at least 2, got {hash_size}")
    if "whash" in algorithms and hash_size & (hash_size - 1):
        raise ValueError(f"whash needs a power-of-two hash_size, got {hash_size}")
    unknown = set(algorithms) - set(PERCEPTUAL_HASHES)
    if unknown:
        raise ValueError(f"unknown hash algorithm(s) {sorted(unknown)}; known: {sorted(PERCEPTUAL_HASHES)}")


def bits_to_words(bits: np.ndarray) -> tuple[int, ...]:
    """Pack a boolean hash array into unsigned 64-bit words, most significant first."""
    flat = np.asarray(bits, dtype=bool).ravel()
    padding = -flat.size % 64
    padded = np.concatenate([np.zeros(padding, dtype=bool), flat])
    return tuple(int(word) for word in np.packbits(padded).view(">u8"))


MIRROR_SUFFIX = "_mirror"


def mirror_key(algorithm: str) -> str:
    """Name of the hash of the left-right mirrored picture."""
    return f"{algorithm}{MIRROR_SUFFIX}"


def perceptual_hashes(
    gray: Image.Image, hash_size: int, algorithms: Sequence[str], mirrored: Sequence[str] = ()
) -> dict[str, tuple[int, ...]]:
    """Hash a grayscale ('L') picture with each algorithm; values are 64-bit word tuples.

    imagehash converts to 'L' first, so hashing the canonical RGB picture's 'L' conversion
    gives the same bits as passing the RGB picture to imagehash. Algorithms in ``mirrored`` also
    hash the left-right mirrored picture, under :func:`mirror_key` names, so that flipped copies
    can be matched.
    """
    hashes = {name: bits_to_words(PERCEPTUAL_HASHES[name](gray, hash_size=hash_size).hash) for name in algorithms}
    if mirrored:
        flipped = ImageOps.mirror(gray)
        for name in mirrored:
            hashes[mirror_key(name)] = bits_to_words(PERCEPTUAL_HASHES[name](flipped, hash_size=hash_size).hash)
    return hashes


def content_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pixel_digest(rgb: Image.Image) -> str:
    """Digest of the decoded pixels and shape: equal for a picture re-saved losslessly."""
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.hexdigest()
