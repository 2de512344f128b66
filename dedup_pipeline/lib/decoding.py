"""Canonical decoding: any file Pillow opens becomes one 8-bit RGB picture.

The same picture stored in different ways must decode to the same pixels, so that hashes and
embeddings compare content rather than storage:

* EXIF orientation is applied (a rotated phone photo equals its upright copy);
* alpha is composited on a fixed white background;
* CMYK, 16/32-bit, float, palette, 1-bit and grayscale modes become 8-bit RGB
  (high bit depths are scaled by their type's range, not clipped);
* animations contribute their first frame.

Failures raise :class:`DecodeError` with a reason a person can act on.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

BACKGROUND_RGB = (255, 255, 255)
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_HIGH_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


class DecodeError(Exception):
    """The file is not a decodable image; ``str(error)`` is the recorded reason."""


@dataclass
class DecodedImage:
    rgb: Image.Image
    format: str | None
    mode: str
    frames: int
    notes: list[str] = field(default_factory=list)

    @property
    def width(self) -> int:
        return self.rgb.width

    @property
    def height(self) -> int:
        return self.rgb.height


def decode_image(data: bytes, max_pixels: int) -> DecodedImage:
    """Decode file bytes to canonical RGB; ``max_pixels`` guards against decompression bombs."""
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
            decoded = _canonicalise(image, max_pixels)
    decoded.notes.extend(f"decoder warning: {warning.message}" for warning in caught)
    return decoded


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


def _canonicalise(image: Image.Image, max_pixels: int) -> DecodedImage:
    source_format, source_mode = image.format, image.mode
    notes: list[str] = []
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
    upright = _apply_orientation(image, notes)
    _refuse_bombs(upright, max_pixels)
    rgb = _to_rgb(upright, notes)
    return DecodedImage(rgb=rgb, format=source_format, mode=source_mode, frames=frames, notes=notes)


def _apply_orientation(image: Image.Image, notes: list[str]) -> Image.Image:
    try:
        orientation = image.getexif().get(0x0112)
    except Exception as error:
        notes.append(f"EXIF unreadable ({type(error).__name__}); orientation not applied")
        return image
    if orientation in (None, 1):
        return image
    try:
        upright = ImageOps.exif_transpose(image)
    except Exception as error:
        notes.append(f"EXIF orientation {orientation} could not be applied ({type(error).__name__})")
        return image
    notes.append(f"EXIF orientation {orientation} applied")
    return upright


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
