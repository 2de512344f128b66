import numpy as np
import pytest
from PIL import Image

from dedup_pipeline.lib.decoding import BACKGROUND_RGB, DecodeError, decode_image
from tests.conftest import encoded, smooth_picture

LIMIT = 10_000_000


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(decode_image(data, LIMIT).rgb)


def test_every_mode_becomes_8bit_rgb() -> None:
    picture = smooth_picture(1)
    for mode in ("L", "1", "P", "CMYK", "RGBA", "LA", "I;16", "I", "F"):
        image = picture.convert(mode) if mode not in ("I;16", "I", "F") else picture.convert("L").convert(mode)
        decoded = decode_image(encoded(image, "TIFF"), LIMIT)
        assert decoded.rgb.mode == "RGB" and decoded.rgb.size == picture.size, mode


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    image = Image.fromarray(ramp)
    assert image.mode == "I;16"
    decoded = pixels(encoded(image, "PNG"))
    assert decoded.max() == round(ramp.max() / 257)  # naive convert('RGB') would give 255 everywhere
    assert decoded[0, 0, 0] == 0


def test_alpha_is_composited_on_the_fixed_background() -> None:
    clear = Image.new("RGBA", (8, 8), (10, 200, 30, 0))
    assert (pixels(encoded(clear, "PNG")) == BACKGROUND_RGB).all()
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([10, 200, 30] + [0] * 765)
    assert (pixels(encoded(palette, "PNG", transparency=0)) == BACKGROUND_RGB).all()


def test_exif_orientation_is_applied() -> None:
    upright = smooth_picture(2, size=(60, 40))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes for orientation 6
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_image(encoded(stored, "PNG", exif=exif), LIMIT)
    assert decoded.rgb.size == upright.size
    assert np.abs(np.asarray(decoded.rgb, dtype=int) - np.asarray(upright, dtype=int)).max() == 0
    assert "EXIF orientation 6 applied" in decoded.notes


def test_animation_uses_the_first_frame() -> None:
    first, second = smooth_picture(3).convert("P"), smooth_picture(4).convert("P")
    data = encoded(first, "GIF", save_all=True, append_images=[second])
    decoded = decode_image(data, LIMIT)
    assert decoded.frames == 2 and any("first of 2 frames" in note for note in decoded.notes)
    assert (np.asarray(decoded.rgb) == np.asarray(first.convert("RGB"))).all()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"certainly not an image", "not an image"),
        (encoded(smooth_picture(5), "JPEG")[:400], "cannot (open|decode)"),
        (encoded(smooth_picture(6), "PNG")[:200], "cannot decode"),
    ],
)
def test_undecodable_files_raise_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        decode_image(data, LIMIT)


def test_decompression_bombs_are_refused() -> None:
    with pytest.raises(DecodeError, match="decompression bomb"):
        decode_image(encoded(Image.new("L", (200, 200)), "PNG"), max_pixels=100 * 100)
