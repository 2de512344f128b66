import io

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from dedup_pipeline.lib.inputs.decoding import BACKGROUND_RGB, DecodeError, decode_image
from tests.conftest import encoded, smooth_picture

LIMIT = 10_000_000


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(decode_image(data, LIMIT).rgb)


def test_every_mode_becomes_8bit_rgb_with_the_same_content() -> None:
    picture = smooth_picture(1)
    gray = np.asarray(picture.convert("L"), dtype=int)
    for mode in ("L", "1", "P", "CMYK", "RGBA", "LA", "I;16", "I", "F"):
        if mode == "I;16":
            image = Image.fromarray((gray * 257).astype(np.uint16))
        elif mode == "I":
            image = Image.fromarray((gray * 257).astype(np.int32))
        elif mode == "F":
            image = Image.fromarray((gray / 255).astype(np.float32))
        else:
            image = picture.convert(mode)
        assert image.mode == mode
        decoded = np.asarray(decode_image(encoded(image, "TIFF"), LIMIT).rgb, dtype=int)
        assert decoded.shape == (picture.height, picture.width, 3), mode
        reference = np.asarray(picture.convert(mode).convert("RGB"), dtype=int) if mode in ("1", "P", "CMYK") else None
        if mode in ("L", "LA", "I;16", "I", "F"):
            assert np.abs(decoded[..., 0] - gray).max() <= 1 and (decoded[..., 0] == decoded[..., 2]).all(), mode
        elif mode == "RGBA":
            assert (decoded == np.asarray(picture, dtype=int)).all()
        else:
            assert np.abs(decoded - reference).max() <= 1, mode


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    image = Image.fromarray(ramp)
    assert image.mode == "I;16"
    decoded = pixels(encoded(image, "PNG"))[..., 0]
    middle = ramp == ramp[32, 0]
    assert abs(int(decoded[middle][0]) - round(int(ramp[32, 0]) / 257)) <= 1  # naive convert gives 255
    assert decoded.min() == 0 and decoded.max() == 255


def test_truncated_animations_are_recorded_not_raised() -> None:
    frames = [smooth_picture(seed) for seed in range(3)]
    for data in (
        encoded(frames[0].convert("P"), "GIF", save_all=True, append_images=[f.convert("P") for f in frames[1:]]),
        encoded(frames[0], "TIFF", save_all=True, append_images=frames[1:]),
    ):
        for cut in range(40, len(data), len(data) // 25):
            try:
                decode_image(data[:cut], LIMIT)
            except DecodeError:
                pass


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


def test_reduced_jpeg_decode_keeps_min_side_and_records_the_upright_full_size() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: upright is 900 wide, 1200 high
    data = encoded(smooth_picture(1, size=(1200, 900)), "JPEG", exif=exif)
    decoded = decode_image(data, LIMIT, min_side=224)
    assert (decoded.width, decoded.height) == (900, 1200)
    assert decoded.rgb.size == (225, 300)  # 1/4 scale keeps both sides >= 224; 1/8 would not
    assert any("reduced size" in note for note in decoded.notes)
    full = decode_image(data, LIMIT)
    assert (full.width, full.height) == full.rgb.size == (900, 1200)
    png = decode_image(encoded(smooth_picture(1, size=(1200, 900)), "PNG"), LIMIT, min_side=224)
    assert png.rgb.size == (1200, 900) and not png.notes  # only JPEGs have reduced decoding


def test_plain_jpegs_take_the_fast_path_with_pillows_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    fast_decodes = []
    real_decode = simplejpeg.decode_jpeg
    monkeypatch.setattr(simplejpeg, "decode_jpeg", lambda *a, **k: fast_decodes.append(1) or real_decode(*a, **k))
    upright = Image.Exif()
    upright[0x0112] = 1
    sideways = Image.Exif()
    sideways[0x0112] = 6
    colour, gray = smooth_picture(2), smooth_picture(3).convert("L")
    cases = [
        (encoded(colour, "JPEG"), "RGB", True),
        (encoded(colour, "JPEG", exif=upright), "RGB", True),
        (encoded(gray, "JPEG"), "L", True),
        (encoded(colour, "JPEG", exif=sideways), "RGB", False),
        (encoded(colour.convert("CMYK"), "JPEG"), "CMYK", False),
    ]
    for data, mode, fast in cases:
        before = len(fast_decodes)
        decoded = decode_image(data, LIMIT)
        assert (len(fast_decodes) > before) == fast, mode
        assert (decoded.format, decoded.mode, decoded.frames) == ("JPEG", mode, 1)
        if fast:
            assert np.array_equal(np.asarray(decoded.rgb), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
