"""Finding 7 (issue 21): the serving graph orients a JPEG exactly as Pillow (``catsdogs predict``) does.

The orientation is placed where a short scan would miss it but Pillow reads it: after 128 KiB of
other segments, after 64 segments, after 0xFF fill bytes and junk, only in XMP, as a LONG, after
an invalid EXIF value that makes Pillow ignore the XMP one. Each variant must decode to the same
pixels in the graph (``signatures.decode``) and in ``images.decode``.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from catsdogs.components.common import images
from catsdogs.components.serve import signatures


def segment(marker: int, body: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(body) + 2) + body


def exif(orientation: int, order: str = "MM", kind: int = 3) -> bytes:
    """An APP1 Exif segment whose IFD0 holds one orientation entry of TIFF type ``kind``."""
    fmt = ">" if order == "MM" else "<"
    value = (
        struct.pack(fmt + "H", orientation) + b"\0\0"
        if kind == 3
        else struct.pack(fmt + "I", orientation)
    )
    tiff = (
        order.encode()
        + struct.pack(fmt + "HI", 42, 8)
        + struct.pack(fmt + "H", 1)
        + struct.pack(fmt + "HHI", 0x0112, kind, 1)
        + value
        + struct.pack(fmt + "I", 0)
    )
    return segment(0xE1, b"Exif\0\0" + tiff)


def xmp(orientation: int, element: bool = False) -> bytes:
    tag = (
        f"<tiff:Orientation>{orientation}</tiff:Orientation>"
        if element
        else f'tiff:Orientation="{orientation}"'
    )
    packet = f'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description {tag}/></x:xmpmeta>'
    return segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0" + packet.encode())


def jpeg(*after_soi: bytes) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(7).integers(0, 256, (20, 33, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    return data[:2] + b"".join(after_soi) + data[2:]


VARIANTS = {
    "after 128 KiB of segments": jpeg(*[segment(0xE2, b"\0" * 60_000)] * 3, exif(6)),
    "after 70 segments": jpeg(*[segment(0xFE, b"comment")] * 70, exif(8)),
    "after 0xFF fill bytes": jpeg(b"\xff" * 7 + exif(3)[1:]),
    "after junk and fill": jpeg(segment(0xFE, b"c"), b"\x00\x13", b"\xff\xff" + exif(5)[1:]),
    "XMP only (attribute)": jpeg(xmp(6)),
    "XMP only (element)": jpeg(segment(0xFE, b"c"), xmp(8, element=True)),
    "last XMP wins": jpeg(xmp(3), xmp(6)),
    "EXIF before XMP": jpeg(exif(8), xmp(6)),
    "invalid EXIF value hides XMP": jpeg(exif(9), xmp(6)),
    "EXIF LONG little-endian": jpeg(exif(6, "II", kind=4)),
    "EXIF LONG big-endian": jpeg(exif(6, "MM", kind=4)),
    "first EXIF wins": jpeg(exif(6), exif(3)),
    "EXIF after an APP0": jpeg(segment(0xE0, b"JFIF\0\1\1\0\0\1\0\1\0\0"), exif(7, "II")),
}


@pytest.fixture(scope="module")
def graph_decode():
    import tensorflow as tf

    return tf.function(
        signatures.decode, input_signature=[tf.TensorSpec([], tf.string)]
    ).get_concrete_function()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_graph_orients_like_pillow(graph_decode, name: str) -> None:
    import tensorflow as tf

    data = VARIANTS[name]
    expected = images.decode(data, name)
    got = graph_decode(tf.constant(data)).numpy()
    assert got.shape == expected.shape, name
    np.testing.assert_array_equal(got, expected, err_msg=name)


def test_the_variants_do_rotate() -> None:
    # Most variants turn the 20x33 image on its side in Pillow: the test exercises real rotations.
    turned = [n for n, data in VARIANTS.items() if images.decode(data, n).shape[:2] == (33, 20)]
    assert len(turned) >= 9, turned
