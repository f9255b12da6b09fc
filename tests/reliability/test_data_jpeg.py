"""Damaged JPEGs and kept JPEGs' metadata in prepare (issue 21 finding 10, issue 27).

Pillow's ``load()`` returns the pixels of a JPEG whose scan data libjpeg found damaged (it only
warns), so before the strict decode such files were trained on. A file kept as it is used to keep
its EXIF (with GPS), comments and junk too.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import simplejpeg
from catsdogs.components.common import records
from catsdogs.components.prepare_dataset import core, jpeg, validation
from PIL import Image

from tests.conftest import ORIGINAL_SIZE
from tests.tiny_models import write_jpeg


def _photo(size: tuple[int, int], seed: int = 3, **save: object) -> bytes:
    """A JPEG with detail everywhere (gradients and noise), so damage to its scan shows."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    noise = np.random.default_rng(seed).integers(0, 40, (height, width, 3))
    pixels = np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], -1) + noise
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(
        buffer, "JPEG", **{"quality": 90, **save}
    )
    return buffer.getvalue()


def _scan(data: bytes) -> tuple[int, int]:
    """Start and end of the entropy-coded data of a baseline JPEG."""
    sos = data.find(b"\xff\xda")
    return sos + 2 + int.from_bytes(data[sos + 2 : sos + 4], "big"), len(data) - 2


def _flipped(data: bytes) -> bytes:
    """16 bytes in the middle of the scan XOR 0x55 (never turned into a 0xFF marker byte).

    Not every such damage makes libjpeg warn (the Huffman decoder can fall back into step and end
    on time, with wrong pixels that no decoder can tell): these images do, which the test checks.
    """
    start, end = _scan(data)
    damaged = bytearray(data)
    for i in range(start + (end - start) // 2, start + (end - start) // 2 + 16):
        damaged[i] ^= 0x55
        damaged[i] = min(damaged[i], 0xFE)
    return bytes(damaged)


def _cut_with_end_marker(data: bytes) -> bytes:
    start, end = _scan(data)
    return data[: start + (end - start) // 2] + b"\xff\xd9"


def _libjpeg_warning(data: bytes) -> str:
    with pytest.raises(ValueError) as caught:
        simplejpeg.decode_jpeg(data, "rgb", strict=True)
    return str(caught.value)


def _source(folder: Path) -> Path:
    for i in range(5):
        write_jpeg(folder / f"cat.{i}.jpg", seed=i)
        write_jpeg(folder / f"dog.{i}.jpg", seed=10 + i)
    return folder


CFG = core.PrepareSettings(val_fraction=0.2, test_fraction=0.2, max_side=256, workers=1)


def test_damaged_scan_data_is_quarantined_with_libjpegs_warning(tmp_path: Path) -> None:
    source = _source(tmp_path / "src")
    damaged = {
        "cat.flipped-large.jpg": _flipped(_photo((640, 480))),  # re-encoded path
        "dog.flipped-small.jpg": _flipped(_photo((160, 120))),  # would be kept as it is
        "cat.cut-end-marker.jpg": _cut_with_end_marker(_photo((640, 480))),
        "dog.cut-end-marker-small.jpg": _cut_with_end_marker(_photo((160, 120))),
    }
    for name, data in damaged.items():
        (source / name).write_bytes(data)
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # the premise: Pillow decodes it without a word
    core.prepare(str(source), str(tmp_path / "out"), CFG, progress=False)
    reasons = {q.file: q.reason for q in records.load_manifest(tmp_path / "out").quarantined}
    assert set(reasons) == set(damaged)
    for name, data in damaged.items():
        warning = _libjpeg_warning(data)
        assert warning.startswith("Corrupt JPEG data: "), (name, warning)
        assert warning in reasons[name], (name, reasons[name])
        assert reasons[name] == jpeg.corrupt_reason(warning)
    assert "premature end of data segment" in reasons["cat.cut-end-marker.jpg"]
    assert "extraneous bytes before marker 0xd9" in reasons["cat.flipped-large.jpg"]


def test_a_truncated_jpeg_keeps_its_reason_and_names_the_warning(tmp_path: Path) -> None:
    data = _photo((640, 480))
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    outcome, stored = validation.validate_image(str(path), 256, 95)
    assert not outcome.ok and stored == b""
    assert outcome.reason == (
        "cannot decode: image file is truncated (libjpeg: Premature end of JPEG file)"
    )


def test_a_warning_about_no_data_leaves_the_file_to_pillow(tmp_path: Path) -> None:
    data = bytearray(_photo((160, 120)))
    data[data.find(b"JFIF\x00") + 5] = 2  # JFIF 2.01: libjpeg warns, the pixels are fine
    assert _libjpeg_warning(bytes(data)).startswith("Warning: unknown JFIF revision number 2.01")
    path = tmp_path / "jfif2.jpg"
    path.write_bytes(bytes(data))
    outcome, stored = validation.validate_image(str(path), 256, 95)
    assert outcome.ok, outcome.reason
    assert stored == validation.validate_image(str(path), 256, 95, codec=None)[1]


def _with_metadata(pixels_seed: int) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Maker-4711"
    exif[0x0112] = 1  # upright: the file is kept as it is
    exif[0x8825] = {1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 36.0)}  # GPS
    data = _photo((160, 120), pixels_seed, exif=exif, icc_profile=b"icc-4711" * 40)
    junk = b"\xff\xe9" + (2 + 13).to_bytes(2, "big") + b"junk-app-4711"  # an APP9 of junk
    comment = b"\xff\xfe" + (2 + 16).to_bytes(2, "big") + b"comment-4711 ..."
    return data[:2] + junk + comment + data[2:] + b"trailing-4711" * 8


def test_a_kept_jpeg_loses_its_metadata_not_its_pixels(tmp_path: Path) -> None:
    import tensorflow as tf

    data = _with_metadata(5)
    path = tmp_path / "meta.jpg"
    path.write_bytes(data)
    assert Image.open(path).getexif().get_ifd(0x8825)  # GPS is there to lose
    outcome, stored = validation.validate_image(str(path), 256, 95)
    assert outcome.ok and outcome.kept and outcome.nbytes == len(stored) < len(data)
    assert b"4711" not in stored and b"Exif" not in stored and b"ICC_PROFILE" not in stored
    assert stored.endswith(b"\xff\xd9") and not Image.open(io.BytesIO(stored)).getexif()
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(io.BytesIO(stored))))
    original_tf = tf.io.decode_jpeg(data, channels=3).numpy()
    assert np.array_equal(original_tf, tf.io.decode_jpeg(stored, channels=3).numpy())
    source = _source(tmp_path / "src")
    for i in range(3):
        (source / f"cat.meta{i}.jpg").write_bytes(_with_metadata(20 + i))
    result = core.prepare(str(source), str(tmp_path / "out"), CFG, progress=False)
    assert result.quarantined == 0 and sum(result.counts.values()) == 13
    for shard in (tmp_path / "out").glob("*.tfrecord"):
        assert b"4711" not in shard.read_bytes(), shard.name


def test_strip_metadata_keeps_restarts_and_progressive_scans_byte_for_byte() -> None:
    for options in ({"restart_marker_blocks": 2}, {"progressive": True}, {"subsampling": 0}):
        data = _photo((96, 72), **options)
        assert jpeg.strip_metadata(data) == data, options
    assert jpeg.strip_metadata(b"\xff\xd8garbage") is None
    assert jpeg.strip_metadata(b"GIF89a") is None
    start, _ = _scan(_photo((96, 72)))
    assert jpeg.strip_metadata(_photo((96, 72))[: start + 10]) is None  # no end marker


def _variants(folder: Path) -> list[Path]:
    """JPEGs that take every branch of the JPEG path: orientations, scales, modes, progressive."""
    files: dict[str, bytes] = {}
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        files[f"orient{orientation}.jpg"] = _photo((300, 200), orientation, exif=exif)
    xmp = b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    files["xmp6.jpg"] = _photo((300, 200), 9, xmp=xmp)
    for width, height in ((257, 100), (513, 301), (1030, 700), (2100, 1500), (4000, 40)):
        files[f"scale{width}x{height}.jpg"] = _photo((width, height), width)
    files["progressive.jpg"] = _photo((640, 480), 11, progressive=True)
    files["small444.jpg"] = _photo((120, 90), 12, subsampling=0)
    for mode in ("L", "CMYK"):
        buffer = io.BytesIO()
        Image.open(io.BytesIO(_photo((300, 200), 13))).convert(mode).save(buffer, "JPEG")
        files[f"mode{mode}.jpg"] = buffer.getvalue()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    return paths


def test_the_strict_path_stores_the_bytes_pillows_path_stored(tmp_path: Path) -> None:
    paths = _variants(tmp_path)
    if ORIGINAL_SIZE.is_dir():
        paths += sorted(ORIGINAL_SIZE.glob("*.jpg"))[:40]
    for path in paths:
        for max_side in (256, 64):
            before, old = validation.validate_image(str(path), max_side, 95, codec=None)
            after, new = validation.validate_image(str(path), max_side, 95)
            assert before.ok and after == before and new == old, (path.name, max_side)
