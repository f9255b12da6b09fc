"""The JPEG path of validation: a strict libjpeg-turbo decode, and kept files without their metadata.

``SimpleJpeg`` decodes through simplejpeg (libjpeg-turbo's TurboJPEG API in one C call, without
Pillow's per-chunk Python loop) at exactly the DCT scale Pillow's ``draft`` picks, so the pixels
are the ones Pillow would decode (libjpeg-turbo's scaled IDCT is the same code either way). Its
decode is strict: libjpeg's "Corrupt JPEG data" warnings, which Pillow's ``load()`` ignores (it
returns the damaged pixels), come back as ``CorruptJpeg``. Any other failure (a fatal error, a
warning that says nothing about the data, a scale that would differ from Pillow's) is
``Unsupported``: the caller decodes with Pillow, which then decides as it did before.

``strip_metadata`` rewrites a JPEG without its APPn and COM segments (EXIF with GPS, XMP, ICC,
thumbnails, maker notes, junk) or anything after its end marker; the header, tables and
entropy-coded data are copied byte for byte, so the pixels do not change.
"""

from __future__ import annotations

import dataclasses
import io
import re
from typing import Any, Protocol

import numpy as np

# libjpeg's warnings that say the image data itself is damaged (libjpeg-turbo 3.1.2, src/jerror.h:
# JWRN_ARITH_BAD_CODE, JWRN_EXTRANEOUS_DATA, JWRN_HIT_MARKER, JWRN_HUFF_BAD_CODE, JWRN_MUST_RESYNC,
# JWRN_BOGUS_ICC start "Corrupt JPEG data"; JWRN_JPEG_EOF, JWRN_BOGUS_PROGRESSION and
# JWRN_NOT_SEQUENTIAL follow). The others (an unknown JFIF revision or Adobe transform code, too many
# scanlines) are not about the data: Pillow decides those files.
CORRUPT_WARNINGS = (
    "Corrupt JPEG data",
    "Premature end of JPEG file",
    "Inconsistent progression sequence",
    "Invalid SOS parameters for sequential JPEG",
)
TRUNCATED_WARNING = "Premature end of JPEG file"

# A marker, after any fill bytes: 0xFF then neither a stuffed zero nor a restart marker RST0-RST7
# (those two belong to the entropy-coded data; ITU-T T.81 B.1.1.2, F.1.2.3).
_MARKER = re.compile(rb"\xff+([^\x00\xd0-\xd7\xff])")
# The same without the fill bytes, to search entropy-coded data (20x faster than with "+"; fill
# bytes before the marker stay with the data, where libjpeg skips them as before).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_SOS, _EOI, _APP0, _APP14, _COM = 0xDA, 0xD9, 0xE0, 0xEE, 0xFE
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn have no length field


class JpegCodec(Protocol):
    """A JPEG decoder and encoder for validation (``SimpleJpeg``; the benchmark adds others)."""

    def decode(self, data: bytes, size: tuple[int, int]) -> np.ndarray:
        """RGB or RGBX pixels ``[height, width, 3 or 4]`` at ``size``.

        Raises ``CorruptJpeg`` or ``Unsupported``.
        """
        ...

    def encode(self, image: Any, quality: int) -> bytes:
        """A Pillow RGB image as JPEG bytes."""
        ...


class CorruptJpeg(Exception):
    """libjpeg warned that the data is damaged; ``str()`` is its message."""


class Unsupported(Exception):
    """The fast path cannot decode this file as Pillow would; Pillow decides instead."""


def pillow_encode(image: Any, quality: int) -> bytes:
    """A Pillow RGB (or RGBX) image as a baseline JPEG (4:2:0, the accurate integer DCT)."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@dataclasses.dataclass(frozen=True)
class SimpleJpeg:
    """Strict decode through simplejpeg; the re-encode through Pillow (default) or simplejpeg.

    TurboJPEG compresses with the fast, less accurate integer DCT below quality 96 and simplejpeg
    cannot ask for the accurate one (libjpeg-turbo 3.1.2 turbojpeg.c, processFlags:
    TJFLAG_ACCURATEDCT is not among simplejpeg 1.9.0's flags), so ``encoder="simplejpeg"`` stores other pixels than
    Pillow does at the default quality 95; ``benchmarks/bench_prepare.py`` measures both.
    """

    encoder: str = "pillow"
    name: str = "simplejpeg"

    def __post_init__(self) -> None:
        if self.encoder not in ("pillow", "simplejpeg"):
            raise ValueError(f"encoder must be 'pillow' or 'simplejpeg', got {self.encoder!r}.")

    def decode(self, data: bytes, size: tuple[int, int]) -> np.ndarray:
        """Decode to RGBX ``uint8`` ``[height, width, 4]`` at ``size``, the size Pillow's draft chose.

        RGBX (X: padding) is how Pillow holds RGB pixels, so ``rgbx_image`` wraps the array
        without a copy.

        Raises:
            CorruptJpeg: libjpeg warned that the data is damaged.
            Unsupported: Anything else went wrong, or the DCT scale would not give ``size``.
        """
        import simplejpeg

        width, height = size
        try:
            # The smallest of libjpeg-turbo's n/8 scales that reaches (width, height): Pillow's
            # draft scale (1/1, 1/2, 1/4, 1/8), since the n/8 just below it is smaller.
            pixels = simplejpeg.decode_jpeg(
                data, "rgbx", min_height=height, min_width=width, strict=True
            )
        except ValueError as error:
            raise _classify(str(error)) from error
        if pixels.shape[:2] != (height, width):
            raise Unsupported(f"decoded {pixels.shape[1]}x{pixels.shape[0]}, not {width}x{height}")
        return pixels

    def encode(self, image: Any, quality: int) -> bytes:
        """Encode a Pillow RGB or RGBX image as JPEG."""
        if self.encoder == "pillow":
            return pillow_encode(image, quality)
        import simplejpeg

        colorspace = "rgbx" if image.mode == "RGBX" else "rgb"
        return bytes(simplejpeg.encode_jpeg(np.asarray(image), quality, colorspace, "420"))


def rgbx_image(pixels: np.ndarray) -> Any:
    """A Pillow image (mode RGBX) over ``[height, width, 4]`` ``uint8`` pixels, without a copy."""
    from PIL import Image

    height, width = pixels.shape[:2]
    return Image.frombuffer("RGBX", (width, height), pixels, "raw", "RGBX", 0, 1)


def _classify(message: str) -> Exception:
    if message.startswith(CORRUPT_WARNINGS):
        return CorruptJpeg(message)
    return Unsupported(message)


def corrupt_reason(message: str) -> str:
    """The quarantine reason for a libjpeg corrupt-data warning."""
    if message.startswith(TRUNCATED_WARNING):
        return f"cannot decode: image file is truncated (libjpeg: {message})"
    return f"cannot decode: {message} (a libjpeg warning: the image data is damaged)"


def strip_metadata(data: bytes) -> bytes | None:
    """``data`` without APPn/COM segments and without what follows the end marker.

    Kept: the JFIF APP0 (without its thumbnail) and the Adobe APP14, which tell libjpeg the color
    transform; every table, frame and scan segment and the entropy-coded data, byte for byte.

    Returns:
        The stripped JPEG, or None when the marker structure is not a plain one (the caller then
        re-encodes the decoded pixels instead).
    """
    if not data.startswith(b"\xff\xd8"):
        return None
    out = [b"\xff\xd8"]
    pos, end = 2, len(data)
    while True:
        match = _MARKER.match(data, pos)
        if match is None:
            return None
        marker, pos = match[1][0], match.end()
        if marker == _EOI:
            out.append(b"\xff\xd9")
            return b"".join(out)
        if marker in _STANDALONE:
            out.append(bytes((0xFF, marker)))
            continue
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > end:
            return None
        segment = data[pos : pos + length]
        if marker == _APP0 and segment[2:7] == b"JFIF\x00" and length >= 16:
            out.append(b"\xff\xe0\x00\x10" + segment[2:14] + b"\x00\x00")  # no thumbnail
        elif marker == _APP14 and segment[2:7] == b"Adobe":
            out.append(b"\xff\xee" + segment)
        elif not (0xE0 <= marker <= 0xEF or marker == _COM):
            out.append(bytes((0xFF, marker)) + segment)
        pos += length
        if marker == _SOS:  # entropy-coded data up to the next marker (restarts stay inside)
            following = _NEXT_MARKER.search(data, pos)
            if following is None:
                return None
            out.append(data[pos : following.start()])
            pos = following.start()
