import imagehash
import numpy as np
import pytest
from PIL import Image, ImageOps

from dedup_pipeline.lib.features.hashing import (
    PERCEPTUAL_HASHES,
    HashBases,
    batch_hashes,
    hash_base,
    mirror_key,
    pack_words,
    perceptual_hashes,
    pixel_digest,
    validate_hash_settings,
)
from tests.conftest import smooth_picture

IMAGEHASH = {
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "ahash": imagehash.average_hash,
    "whash": imagehash.whash,
}


def as_bits(words: tuple[int, ...], hash_size: int) -> np.ndarray:
    value = 0
    for word in words:
        value = (value << 64) | word
    return np.array([(value >> (hash_size * hash_size - 1 - k)) & 1 for k in range(hash_size * hash_size)], bool)


@pytest.mark.parametrize("hash_size", [4, 8, 16])
def test_phash_is_imagehash_and_the_others_stay_close(hash_size: int) -> None:
    differing = dict.fromkeys(PERCEPTUAL_HASHES, 0)
    pictures = [smooth_picture(seed, size=(120, 90)) for seed in range(12)]
    for picture in pictures:
        ours = perceptual_hashes(picture, hash_size, list(PERCEPTUAL_HASHES))
        for name, function in IMAGEHASH.items():
            theirs = function(picture, hash_size=hash_size).hash.ravel()
            differing[name] += int((as_bits(ours[name], hash_size) != theirs).sum())
    bits = len(pictures) * hash_size * hash_size
    assert differing["phash"] == 0
    # derived from the shared base rather than separate resizes of the picture: a few bits move
    assert all(count <= 0.03 * bits for count in differing.values()), differing  # measured: under 1%


def test_on_pictures_of_the_base_size_phash_ahash_dhash_are_imagehash_bit_for_bit() -> None:
    for seed in range(12):
        picture = smooth_picture(seed, size=(32, 32))
        ours = perceptual_hashes(picture, 8, ["phash", "ahash", "dhash"])
        for name in ours:
            assert (as_bits(ours[name], 8) == IMAGEHASH[name](picture).hash.ravel()).all(), name


def test_derived_hashes_follow_their_definitions() -> None:
    for seed in range(6):
        picture = smooth_picture(seed, size=(70, 50))
        base = hash_base(picture, 8)
        assert np.array_equal(base, np.asarray(picture.convert("L").resize((32, 32), Image.Resampling.LANCZOS)))
        hashes = perceptual_hashes(picture, 8, ["dhash", "ahash", "whash"])
        row_steps = np.asarray(Image.fromarray(base).resize((9, 8), Image.Resampling.LANCZOS), dtype=int)
        assert (as_bits(hashes["dhash"], 8) == (row_steps[:, 1:] > row_steps[:, :-1]).ravel()).all()
        small = np.asarray(Image.fromarray(base).resize((8, 8), Image.Resampling.LANCZOS), dtype=float)
        assert (as_bits(hashes["ahash"], 8) == (small > small.mean()).ravel()).all()
        sums = base.astype(float).reshape(8, 4, 8, 4).sum(axis=(1, 3))
        assert (as_bits(hashes["whash"], 8) == (sums > np.median(sums)).ravel()).all()


def test_whash_equals_imagehash_on_pictures_of_the_base_size_except_on_ties() -> None:
    for seed in range(12):
        picture = smooth_picture(seed, size=(32, 32))
        ours = as_bits(perceptual_hashes(picture, 8, ["whash"])["whash"], 8)
        sums = np.asarray(picture.convert("L"), dtype=float).reshape(8, 4, 8, 4).sum(axis=(1, 3)).ravel()
        theirs = imagehash.whash(picture).hash.ravel()
        assert (sums[ours != theirs] == np.median(sums)).all()  # imagehash breaks ties by rounding noise


def test_a_batch_hashes_like_its_pictures_one_by_one() -> None:
    pictures = [smooth_picture(seed) for seed in range(5)]
    names = list(PERCEPTUAL_HASHES)
    batch = batch_hashes([hash_base(p, 8) for p in pictures], 8, names, ["phash", "dhash"])
    for row, picture in enumerate(pictures):
        single = perceptual_hashes(picture, 8, names, ["phash", "dhash"])
        assert {name: tuple(int(w) for w in words[row]) for name, words in batch.items()} == single
    assert batch_hashes([], 8, names)["phash"].shape == (0, 1)
    with pytest.raises(ValueError, match="32 x 32"):
        batch_hashes([np.zeros((16, 16))], 8, names)


def test_default_hash_is_one_word_with_imagehash_hex_value() -> None:
    picture = smooth_picture(7)
    (word,) = perceptual_hashes(picture, 8, ["phash"])["phash"]
    assert f"{word:016x}" == str(imagehash.phash(picture))


def test_pack_words_pads_on_the_most_significant_side() -> None:
    assert pack_words(np.array([[1, 0, 1]], bool)).tolist() == [[5]]
    assert pack_words(np.ones((2, 65), dtype=bool)).tolist() == [[1, 2**64 - 1]] * 2


def test_pixel_digest_ignores_storage_but_not_content() -> None:
    picture = smooth_picture(8)
    assert pixel_digest(picture) == pixel_digest(picture.copy())
    assert pixel_digest(picture) != pixel_digest(picture.transpose(0))


def test_invalid_hash_configuration_is_rejected() -> None:
    validate_hash_settings(6, ["phash", "whash"])
    with pytest.raises(ValueError, match="at least 2"):
        validate_hash_settings(1, ["phash"])
    with pytest.raises(ValueError, match="unknown"):
        validate_hash_settings(8, ["colorhash"])


def test_mirror_hashes_are_the_hashes_of_the_mirrored_picture() -> None:
    picture = smooth_picture(9)
    hashes = perceptual_hashes(picture, 8, ["phash", "dhash"], mirrored=["phash", "dhash"])
    assert set(hashes) == {"phash", "dhash", mirror_key("phash"), mirror_key("dhash")}
    (word,) = hashes[mirror_key("phash")]
    assert f"{word:016x}" == str(imagehash.phash(ImageOps.mirror(picture)))
    assert hashes[mirror_key("dhash")] == perceptual_hashes(ImageOps.mirror(picture), 8, ["dhash"])["dhash"]


@pytest.mark.parametrize("hash_size", [3, 4, 8, 11, 16])
def test_every_mirrored_hash_is_the_hash_of_the_mirrored_base(hash_size: int) -> None:
    bases = np.stack([hash_base(smooth_picture(seed, size=(90, 70)), hash_size) for seed in range(8)])
    names = list(PERCEPTUAL_HASHES)
    mirrored = batch_hashes(bases, hash_size, names, names)
    of_flipped = batch_hashes(np.ascontiguousarray(bases[:, :, ::-1]), hash_size, names)
    for name in names:
        assert np.array_equal(mirrored[mirror_key(name)], of_flipped[name]), name
        assert np.array_equal(mirrored[name], batch_hashes(bases, hash_size, [name])[name]), name


def test_hash_bases_of_a_batch_keep_order_whatever_the_sizes() -> None:
    pictures = [smooth_picture(seed, size=size) for seed, size in enumerate([(32, 32), (70, 50), (32, 32), (20, 40)])]
    collected = HashBases(8)
    for picture in pictures:
        collected.add(np.asarray(picture))
    assert np.array_equal(collected.stacked(), np.stack([hash_base(p, 8) for p in pictures]))
    assert HashBases(8).stacked().shape == (0, 32, 32)
