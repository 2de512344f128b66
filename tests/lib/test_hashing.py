import imagehash
import numpy as np
import pytest
from PIL import Image, ImageOps

from dedup_pipeline.lib.hashing import (
    PERCEPTUAL_HASHES,
    bits_to_words,
    haar_whash,
    mirror_key,
    perceptual_hashes,
    pixel_digest,
    validate_hash_settings,
)
from tests.conftest import smooth_picture


@pytest.mark.parametrize("hash_size", [4, 8, 16])
def test_hashes_equal_imagehash_output(hash_size: int) -> None:
    for seed in range(5):
        picture = smooth_picture(seed, size=(120, 90))
        ours = perceptual_hashes(picture.convert("L"), hash_size, list(PERCEPTUAL_HASHES))
        for name, function in PERCEPTUAL_HASHES.items():
            value = 0
            for word in ours[name]:
                value = (value << 64) | word
            assert value == int(str(function(picture, hash_size=hash_size)), 16), (name, hash_size)


@pytest.mark.parametrize("hash_size", [4, 8, 16])
def test_fast_whash_equals_imagehash_except_on_exact_ties(hash_size: int) -> None:
    differing = 0
    for seed in range(12):
        gray = smooth_picture(seed, size=(120, 90)).convert("L")
        ours, theirs = haar_whash(gray, hash_size).hash, imagehash.whash(gray, hash_size=hash_size).hash
        scale = 2 ** int(np.log2(90))
        pixels = np.asarray(gray.resize((scale, scale), Image.Resampling.LANCZOS), dtype=np.float64)
        block = scale // hash_size
        sums = pixels.reshape(hash_size, block, hash_size, block).sum(axis=(1, 3))
        assert (ours == (sums > np.median(sums))).all()
        assert (sums[ours != theirs] == np.median(sums)).all()  # imagehash breaks ties by rounding noise
        differing += int((ours != theirs).sum())
    assert differing <= 12  # ties are rare


def test_default_hash_is_one_word_with_imagehash_hex_value() -> None:
    picture = smooth_picture(7)
    (word,) = perceptual_hashes(picture.convert("L"), 8, ["phash"])["phash"]
    assert f"{word:016x}" == str(imagehash.phash(picture))


def test_bits_to_words_pads_on_the_most_significant_side() -> None:
    assert bits_to_words(np.array([1, 0, 1])) == (5,)
    assert bits_to_words(np.ones(65, dtype=bool)) == (1, 2**64 - 1)


def test_pixel_digest_ignores_storage_but_not_content() -> None:
    picture = smooth_picture(8)
    assert pixel_digest(picture) == pixel_digest(picture.copy())
    assert pixel_digest(picture) != pixel_digest(picture.transpose(0))


def test_invalid_hash_configuration_is_rejected() -> None:
    with pytest.raises(ValueError, match="power-of-two"):
        validate_hash_settings(6, ["whash"])
    validate_hash_settings(6, ["phash"])
    with pytest.raises(ValueError, match="unknown"):
        validate_hash_settings(8, ["colorhash"])


def test_mirror_hashes_are_the_hashes_of_the_mirrored_picture() -> None:
    picture = smooth_picture(9)
    hashes = perceptual_hashes(picture.convert("L"), 8, ["phash", "dhash"], mirrored=["phash"])
    assert set(hashes) == {"phash", "dhash", mirror_key("phash")}
    (word,) = hashes[mirror_key("phash")]
    assert f"{word:016x}" == str(imagehash.phash(ImageOps.mirror(picture)))
