"""Canonical decoding: any file Pillow opens becomes one 8-bit RGB picture.

The same picture stored in different ways must decode to the same pixels, so that hashes and
embeddings compare content rather than storage:

* EXIF orientation is applied (a rotated phone photo equals its upright copy);
* alpha is composited on a fixed white background;
* CMYK, 16/32-bit, float, palette, 1-bit and grayscale modes become 8-bit RGB
  (high bit depths are scaled by their type's range, not clipped);
* animations contribute their first frame.

Callers that only need a small picture pass ``min_side``: a JPEG is then decoded at 1/2, 1/4 or
1/8 scale by libjpeg's DCT scaling (Pillow's ``draft``) when the result keeps both sides at least
``min_side``, which skips most of the decoding work on camera-sized photos. The recorded width and
height stay the file's; the reduced decode is noted, since its pixel digest is of those pixels.

Plain JPEGs (YCbCr or grayscale, upright, single picture) take a fast path through simplejpeg
(libjpeg-turbo with little per-file overhead; about 6x faster than Pillow on small files, with the
same pixels and the same DCT scale factors); everything else, and any JPEG simplejpeg rejects or
warns about, goes through Pillow, which then decides what the file is and why it fails.

Failures raise :class:`DecodeError` with a reason a person can act on.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

BACKGROUND_RGB = (255, 255, 255)
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_HIGH_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class DecodeError(Exception):
    """The file is not a decodable image; ``str(error)`` is the recorded reason."""


@dataclass
class DecodedImage:
    pixels: np.ndarray  # (rows, columns, 3) uint8 RGB; smaller than width x height after a reduced decode
    format: str | None
    mode: str
    frames: int
    width: int  # upright size of the full picture (``rgb`` is smaller after a reduced decode)
    height: int
    notes: list[str] = field(default_factory=list)

    @property
    def rgb(self) -> Image.Image:
        return Image.fromarray(self.pixels)


def decode_image(data: bytes, max_pixels: int, min_side: int | None = None) -> DecodedImage:
    """Decode file bytes to canonical RGB; ``max_pixels`` guards against decompression bombs.
    With ``min_side``, JPEGs may be decoded reduced, keeping both sides at least ``min_side``."""
    if data.startswith(b"\xff\xd8\xff"):
        plain = _decode_plain_jpeg(data, max_pixels, min_side)
        if plain is not None:
            return plain
    with _pillow_pixel_limit(max_pixels), warnings.catch_warnings(record=True) as caught:
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; we refuse above max_pixels.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.simplefilter("always", UserWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise DecodeError("not an image Pillow can identify") from None
        except Image.DecompressionBombError as error:
            raise DecodeError(f"decompression bomb refused: {error}") from None
        except Exception as error:
            raise DecodeError(f"cannot open: {type(error).__name__}: {error}") from None
        with image:
            _refuse_bombs(image, max_pixels)
            decoded = _canonicalise(image, max_pixels, min_side)
    decoded.notes.extend(f"decoder warning: {warning.message}" for warning in caught)
    return decoded


JPEG_START_OF_SCAN = 0xDA
JPEG_STANDALONE_MARKERS = {0x01, 0xD8, *range(0xD0, 0xD8)}


def _jpeg_header_segments(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(marker, payload) of each JPEG segment before the image data."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker in JPEG_STANDALONE_MARKERS:
            position += 2
        elif marker == JPEG_START_OF_SCAN:
            return
        else:
            length = int.from_bytes(data[position + 2 : position + 4], "big")
            yield marker, data[position + 4 : position + 2 + length]
            position += 2 + length


def _is_plain_jpeg(data: bytes) -> bool:
    """No EXIF rotation or mirroring and no further pictures (MPO): the stored pixels are the picture."""
    if b"Exif\x00\x00" not in data and b"MPF\x00" not in data:
        return True  # neither segment is there (a fast byte search): no need to walk the segments
    for marker, payload in _jpeg_header_segments(data):
        if marker == 0xE1 and payload.startswith(b"Exif\x00\x00"):
            try:
                with warnings.catch_warnings():  # a corrupt EXIF block warns: Pillow's path reports it
                    warnings.simplefilter("error")
                    orientation = Image.Exif()
                    orientation.load(payload)
                if orientation.get(0x0112) not in (None, 1):
                    return False
            except Exception:  # let Pillow's path report it
                return False
        elif marker == 0xE2 and payload.startswith(b"MPF\x00"):
            return False
    return True


def _decode_plain_jpeg(data: bytes, max_pixels: int, min_side: int | None) -> DecodedImage | None:
    """The fast path; None when the file is not a plain JPEG or simplejpeg has any complaint."""
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if colorspace not in ("YCbCr", "Gray") or not 0 < width * height <= max_pixels or not _is_plain_jpeg(data):
        return None
    side = min_side or 0
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=side, min_width=side)
    except ValueError:  # corrupt, truncated or unusual: Pillow decides and explains
        return None
    notes = []
    if pixels.shape[:2] != (height, width):
        notes.append(f"decoded at reduced size {pixels.shape[1]}x{pixels.shape[0]} (JPEG DCT scaling)")
    mode = "RGB" if colorspace == "YCbCr" else "L"
    return DecodedImage(pixels, "JPEG", mode, frames=1, width=width, height=height, notes=notes)


@contextmanager
def _pillow_pixel_limit(max_pixels: int) -> Iterator[None]:
    """Pillow refuses above twice its global MAX_IMAGE_PIXELS; set it from our limit for this
    decode (so a limit above Pillow's default takes effect) and put the global back after."""
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _refuse_bombs(image: Image.Image, max_pixels: int) -> None:
    pixels = image.width * image.height
    if pixels > max_pixels:
        raise DecodeError(
            f"decompression bomb refused: {image.width}x{image.height} = {pixels:,} pixels > limit {max_pixels:,}"
        )
    if pixels == 0:
        raise DecodeError(f"empty image ({image.width}x{image.height})")


def _canonicalise(image: Image.Image, max_pixels: int, min_side: int | None) -> DecodedImage:
    source_format, source_mode, (width, height) = image.format, image.mode, image.size
    notes: list[str] = []
    if min_side and image.draft(None, (min_side, min_side)) is not None and image.size != (width, height):
        notes.append(f"decoded at reduced size {image.width}x{image.height} (JPEG DCT scaling)")
    try:
        # Counting frames parses the whole file: truncated animations fail here, with any error type.
        frames = getattr(image, "n_frames", 1)
        image.seek(0)
        image.load()
    except Image.DecompressionBombError as error:
        raise DecodeError(f"decompression bomb refused: {error}") from None
    except Exception as error:  # truncated data, broken chunks, codec errors
        raise DecodeError(f"cannot decode: {type(error).__name__}: {error}") from None

    if frames > 1:
        notes.append(f"animated: first of {frames} frames used")
    upright, quarter_turn = _apply_orientation(image, notes)
    _refuse_bombs(upright, max_pixels)
    if quarter_turn:
        width, height = height, width
    rgb = _to_rgb(upright, notes)
    return DecodedImage(
        pixels=np.asarray(rgb),
        format=source_format,
        mode=source_mode,
        frames=frames,
        width=width,
        height=height,
        notes=notes,
    )


def _apply_orientation(image: Image.Image, notes: list[str]) -> tuple[Image.Image, bool]:
    """The upright picture, and whether it was turned by a quarter (width and height swap)."""
    try:
        orientation = image.getexif().get(0x0112)
    except Exception as error:
        notes.append(f"EXIF unreadable ({type(error).__name__}); orientation not applied")
        return image, False
    if orientation in (None, 1):
        return image, False
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception as error:
        notes.append(f"EXIF orientation {orientation} could not be applied ({type(error).__name__})")
        return image, False
    notes.append(f"EXIF orientation {orientation} applied")
    return upright, orientation in (5, 6, 7, 8)


def _to_rgb(image: Image.Image, notes: list[str]) -> Image.Image:
    mode = image.mode
    if mode in _HIGH_DEPTH_MODES:
        notes.append(f"{mode} pixels scaled to 8 bits")
        return _scale_to_8bit(image).convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    elif mode in {"P", "PA"}:
        image = image.convert("RGBA" if mode == "PA" else "RGB")
        mode = image.mode
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND_RGB + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return image
    return image.convert("RGB")  # CMYK, YCbCr, LAB, HSV, L, 1


def _scale_to_8bit(image: Image.Image) -> Image.Image:
    """Map high-bit-depth pictures onto 0..255 by their container's range (never clip 16-bit to 255).

    ``I;16*`` is a 16-bit container. ``I`` is what Pillow gives 16-bit PNG/TIFF files too, so it is
    read as 16-bit unless values exceed 65535. ``F`` is taken as 0..1 when it fits, else 0..255.
    """
    pixels = np.asarray(image)
    if image.mode == "F":
        finite = np.nan_to_num(pixels.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if float(finite.max(initial=0.0)) <= 1.0 else 1.0
        scaled = np.clip(finite * scale, 0, 255)
    else:
        wide = np.clip(pixels.astype(np.int64), 0, None)
        full_scale = 65535 if int(wide.max(initial=0)) <= 65535 else 2**32 - 1
        scaled = wide * (255.0 / full_scale)
    return Image.fromarray(np.rint(scaled).astype(np.uint8), mode="L")
