"""Decoding any image file into the canonical RGB uint8 square: shared by clean and predict."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from pillow_heif import register_heif_opener

from ..core.errors import ImageRejected
from ..core.params import PIL_PIXEL_LIMIT

# decode checks each image's pixels against its own max_pixels as soon as the header is read, before
# anything is decoded. PIL's process-wide limit is off, so that threads decoding at once (clean) need
# not swap a global: swapped per call, one thread's restore lifted or lowered another's limit mid-open.
Image.MAX_IMAGE_PIXELS = None
register_heif_opener()  # HEIC/HEIF, iPhones' default format (AVIF: Pillow's own): any image PIL opens

# Reasons an image is dropped; clean.json counts them under these names.
ZERO_BYTES = "zero_bytes"
NOT_AN_IMAGE = "not_an_image"
UNREADABLE = "unreadable_or_truncated"
BOMB = "decompression_bomb"
TOO_SMALL = "too_small"
DUPLICATE = "duplicate"
NOT_A_FILE = "not_a_regular_file"


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode to RGB; transparency is composited onto white, 16-bit data scaled to 8 bits."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr * (255.0 / peak), 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info or img.mode in ("LA", "La", "PA", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def letterbox(img: Image.Image, size: int) -> np.ndarray:
    """Resize so the longer side is ``size`` (aspect kept) and pad with the border's mean colour."""
    w, h = img.size
    scale = size / max(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    if new != img.size:
        img = img.resize(new, Image.Resampling.BILINEAR, reducing_gap=3.0 if scale < 0.5 else None)
    arr = np.asarray(img, dtype=np.uint8)
    if new == (size, size):
        return arr.copy()
    border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = border.mean(axis=0).round().astype(np.uint8)
    top, left = (size - new[1]) // 2, (size - new[0]) // 2
    canvas[top:top + new[1], left:left + new[0]] = arr
    return canvas


def decode(source: Path | str | bytes, size: int, min_side: int = 1, max_pixels: int = PIL_PIXEL_LIMIT) -> np.ndarray:
    """Decode a file, or a file's bytes, completely (EXIF orientation applied, first frame) into
    (size, size, 3) uint8.

    Raises ImageRejected with one of the reasons above; images over ``max_pixels`` are never decoded.
    """
    if isinstance(source, bytes):
        if not source:
            raise ImageRejected(ZERO_BYTES)
        opened = io.BytesIO(source)
    else:
        opened = Path(source)
        if not opened.is_file():
            raise ImageRejected(NOT_A_FILE, "not a regular file")
        if opened.stat().st_size == 0:
            raise ImageRejected(ZERO_BYTES)
    try:
        with Image.open(opened) as img:
            if img.width * img.height > max_pixels:
                raise ImageRejected(BOMB, f"{img.width}x{img.height} pixels, over {max_pixels}")
            if min(img.size) < min_side:
                raise ImageRejected(TOO_SMALL, f"{img.width}x{img.height} < {min_side}")
            if img.format == "JPEG" and img.mode in ("RGB", "L"):
                img.draft(img.mode, (size, size))
            elif img.format == "HEIF":  # its embedded thumbnail, where one is a scaled copy at least this large
                img.draft(None, (size, size))
            img.load()  # full decode: truncated data fails here, not later
            img = ImageOps.exif_transpose(img)
            return letterbox(to_rgb(img), size)
    except Image.UnidentifiedImageError:
        raise ImageRejected(NOT_AN_IMAGE, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise ImageRejected(UNREADABLE, f"{type(exc).__name__}: {exc}") from None


IMAGE_STATISTICS = ("brightness", "contrast", "border")


def image_statistics(pixels: np.ndarray) -> dict[str, np.ndarray]:
    """Per image of a canonical batch [N, 3, H, W] (uint8, or floats in [0, 1]): mean brightness,
    contrast (the standard deviation) and the brightness of the outer eighth of the canvas, where a
    catalogue photo's background is. Photos unlike the training ones (another background, inverted
    colours, another light) move these before a model's confidence shows it."""
    x = pixels.astype(np.float32) / (255.0 if pixels.dtype == np.uint8 else 1.0)
    gray = x.mean(axis=1)
    ring = max(1, gray.shape[-1] // 8)
    inner = np.zeros(gray.shape[1:], bool)
    inner[ring:-ring, ring:-ring] = True
    return {"brightness": gray.mean(axis=(1, 2)).round(4), "contrast": gray.std(axis=(1, 2)).round(4),
            "border": gray[:, ~inner].mean(axis=1).round(4)}
