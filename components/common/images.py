"""Single images for prediction and rendering: loading (files, folders, gs://) and encoding.

Images are decoded with Pillow, EXIF orientation is applied and the result is RGB ``uint8``, the
same conventions ``prepare_dataset`` uses for the records, so a photo predicted from disk looks to
the model exactly like one read from a prepared dataset.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from catsdogs.components.common import storage
from catsdogs.components.common.errors import ImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageSource:
    """One image to load, or an input that expanded to no image (``error`` says why)."""

    uri: str
    error: str | None = None


def decode(data: bytes, name: str) -> np.ndarray:
    """Decode image bytes to an RGB ``uint8`` array ``[H, W, 3]`` with EXIF orientation applied.

    Args:
        data: The encoded image (JPEG, PNG, ...).
        name: Where it came from, for the error message.

    Raises:
        ImageError: The bytes are not an image Pillow can decode.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x MAX_IMAGE_PIXELS: refuse those too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))  # reads the header only
        with opened as image:
            image.load()
            oriented = ImageOps.exif_transpose(image) or image
            rgb = to_rgb(oriented)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(
            f"{name} is a decompression bomb ({error}); it was not decoded. Use an image of at "
            f"most {Image.MAX_IMAGE_PIXELS:,} pixels."
        ) from error
    except ImageError as error:
        raise ImageError(f"{name}: {error}") from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageError(
            f"{name} is not a decodable image ({type(error).__name__}: {_pillow_text(error)}). "
            "Expected a JPEG/PNG/BMP/GIF/WebP file; remove it or re-export it."
        ) from error
    return np.asarray(rgb, dtype=np.uint8)


def to_rgb(image: Any) -> Any:
    """A decoded Pillow image as 8-bit RGB, scaling 16-bit pixels instead of clipping them.

    Pillow's ``convert("RGB")`` clips 16-bit (``I;16``) pixels at 255, which stores a 16-bit grey
    PNG almost all white; here they are scaled to 8 bits. 32-bit integer and float pixels (``I``
    and ``F`` modes, e.g. scientific TIFFs) have no standard brightness range: they are refused.

    Raises:
        ImageError: The pixels are 32-bit integers or floats (the message says how to fix it).
    """
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I;16"):  # 16-bit grey (PNG, TIFF)
        wide = np.asarray(image, dtype=np.uint32)
        grey = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode in ("I", "F"):
        kind = "32-bit integer" if mode == "I" else "32-bit float"
        raise ImageError(
            f"{kind} pixels (Pillow mode {mode}) have no standard brightness range, so they "
            "cannot be turned into 8-bit RGB safely; export the image as 8- or 16-bit"
        )
    return image.convert("RGB")


# Pillow names the stream it was given: the in-memory buffer's repr says nothing to a user.
_STREAM_REPR = re.compile(r"\s*<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


def _pillow_text(error: BaseException) -> str:
    """Pillow's message without the ``<_io.BytesIO object at 0x...>`` it decoded from."""
    return _STREAM_REPR.sub("", str(error)).strip() or "unreadable data"


def load(uri: str) -> np.ndarray:
    """Read and decode one local or gs:// image (see ``decode``)."""
    try:
        data = storage.read_bytes(uri)
    except (FileNotFoundError, IsADirectoryError) as error:
        raise ImageError(f"{uri} does not exist or is not a file; check the path.") from error
    return decode(data, uri)


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def expand(inputs: list[str]) -> list[ImageSource]:
    """Expand files, folders and gs:// prefixes into the image files they name, in order.

    A file is taken as given whatever its suffix (so a bad file is reported, not skipped); a folder
    or prefix contributes its files with an image suffix, recursively and sorted. An input that
    does not exist or holds no image becomes an ``ImageSource`` with an ``error``.
    """
    sources: list[ImageSource] = []
    for item in inputs:
        if storage.is_remote(item):
            _, name = storage.split_remote(item)
            if name and not name.endswith("/") and storage.exists(item):
                sources.append(ImageSource(item))
                continue
            names = [n for n in storage.list_files(item) if _is_image_name(n)]
            if not names:
                sources.append(ImageSource(item, f"no image files found under {item}"))
            sources.extend(ImageSource(storage.join(item, n)) for n in names)
            continue
        path = Path(item)
        if path.is_file():
            sources.append(ImageSource(item))
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and _is_image_name(p.name))
            if not files:
                sources.append(ImageSource(item, f"no image files found in folder {item}"))
            sources.extend(ImageSource(str(p)) for p in files)
        else:
            sources.append(ImageSource(item, f"{item} does not exist; check the path"))
    return sources


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``(height, width)`` exactly as ``records.read_split`` does (bilinear, rounded)."""
    import tensorflow as tf

    resized: Any = tf.image.resize(image, size, method="bilinear")
    return np.asarray(tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8))


def _encode(image: np.ndarray, image_format: str, max_side: int = 0, **options: Any) -> bytes:
    """Encode an RGB ``uint8`` array with Pillow, shrunk first to ``max_side`` when given."""
    from PIL import Image

    picture = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if max_side:
        picture.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    picture.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def png_bytes(image: np.ndarray) -> bytes:
    """An RGB ``uint8`` array as PNG (lossless)."""
    return _encode(image, "PNG")


def jpeg_bytes(image: np.ndarray, quality: int = 85) -> bytes:
    """An RGB ``uint8`` array as JPEG (the copies HTML pages embed)."""
    return _encode(image, "JPEG", quality=quality)


def thumbnail_jpeg(image: np.ndarray, max_side: int = 160, quality: int = 85) -> bytes:
    """A small JPEG of an RGB array, for galleries embedded in HTML reports."""
    return _encode(image, "JPEG", max_side, quality=quality)


# The one JPEG decoder setting of training, evaluation, prediction and serving: libjpeg's accurate
# integer DCT (JDCT_ISLOW), the one Pillow decodes with (``catsdogs predict``). tf.io.decode_jpeg's
# default is the fast DCT, up to a few levels per pixel away.
JPEG_DCT_METHOD = "INTEGER_ACCURATE"


def decode_jpeg(data: Any) -> Any:
    """Decode JPEG bytes (scalar tf.string) to RGB uint8, with ``JPEG_DCT_METHOD`` (as Pillow)."""
    import tensorflow as tf

    return tf.io.decode_jpeg(data, channels=3, dct_method=JPEG_DCT_METHOD)
