"""Hostile images: pixel bombs, 16-bit and 32-bit pixels, degenerate sizes, in prepare and predict."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from catsdogs.components.common import images, records
from catsdogs.components.predict import core as predictor
from catsdogs.components.prepare_dataset import core, validation
from PIL import Image

from tests.tiny_models import flat_model, save_model_dir, write_jpeg

GRADIENT = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)  # mean 32767.5
FLOAT_REFUSED = "32-bit float pixels (Pillow mode F) have no standard brightness range"
INT_REFUSED = "32-bit integer pixels (Pillow mode I) have no standard brightness range"


def _save(path: Path, pixels: np.ndarray, image_format: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, image_format)
    return path


def _bomb(path: Path, side: int) -> Path:
    """A small valid JPEG whose header claims ``side`` x ``side`` pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 90, 90)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2
    path.write_bytes(bytes(data))
    return path


def test_16_bit_grey_is_scaled_not_clipped_white(tmp_path: Path) -> None:
    for image_format in ("PNG", "TIFF"):
        path = _save(tmp_path / f"grey16.{image_format.lower()}", GRADIENT, image_format)
        outcome, data = validation.validate_image(str(path), 256, 95)
        stored = np.asarray(Image.open(io.BytesIO(data)))
        assert outcome.ok and stored.shape == (48, 64, 3), image_format
        assert 120 < stored.mean() < 135 and (stored >= 250).mean() < 0.05, image_format
        loaded = images.load(str(path))  # predict's decoder
        assert 126 < loaded.mean() < 129 and loaded.max() == 255 and loaded.min() == 0


def test_32_bit_and_float_pixels_are_quarantined_with_a_reason(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for i in range(5):
        write_jpeg(source / f"cat.{i}.jpg", seed=i)
        write_jpeg(source / f"dog.{i}.jpg", seed=10 + i)
    _save(source / "cat.float.tif", (GRADIENT / 65535).astype(np.float32), "TIFF")
    _save(source / "dog.int32.tif", GRADIENT.astype(np.int32) * 1000, "TIFF")
    cfg = core.PrepareSettings(train_per_class=3, val_per_class=1, test_per_class=1, workers=1)
    core.prepare(str(source), str(tmp_path / "out"), cfg, progress=False)
    reasons = {q.file: q.reason for q in records.load_manifest(tmp_path / "out").quarantined}
    assert set(reasons) == {"cat.float.tif", "dog.int32.tif"}
    assert reasons["cat.float.tif"].startswith(FLOAT_REFUSED)
    assert reasons["dog.int32.tif"].startswith(INT_REFUSED)


def test_degenerate_images_are_flagged_in_the_quality_report(tmp_path: Path) -> None:
    source = tmp_path / "src"
    for i in range(5):
        write_jpeg(source / f"cat.{i}.jpg", seed=i)
        write_jpeg(source / f"dog.{i}.jpg", seed=10 + i)
    Image.new("RGB", (1, 1), (9, 9, 9)).save(source / "cat.dot.png")
    Image.new("RGB", (200, 8), (9, 9, 9)).save(source / "dog.strip.png")
    cfg = core.PrepareSettings(val_fraction=0.2, test_fraction=0.2, workers=1)
    result = core.prepare(str(source), str(tmp_path / "out"), cfg, progress=False)
    section = result.report.split("## Degenerate images (2)")[1]
    assert "| cat.dot.png | 1x1 |" in section and "| dog.strip.png | 200x8 |" in section
    assert result.quarantined == 0  # flagged, still kept


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_model_dir(flat_model(), tmp_path_factory.mktemp("model") / "model")


def test_pixel_bombs_and_float_images_are_per_file_errors_in_predict(
    tmp_path: Path, model: str
) -> None:
    folder = tmp_path / "photos"
    write_jpeg(folder / "a.jpg", seed=1)
    _bomb(folder / "b_bomb_400M.jpg", 20000)  # over 2x the limit: Pillow raises
    _bomb(folder / "c_bomb_100M.jpg", 10000)  # between 1x and 2x: Pillow only warns
    _save(folder / "d_float.tif", (GRADIENT / 65535).astype(np.float32), "TIFF")
    _save(folder / "e_grey16.png", GRADIENT, "PNG")
    results = {Path(r.image).name: r for r in predictor.predict(model, [str(folder)])}
    assert list(results) == [
        "a.jpg",
        "b_bomb_400M.jpg",
        "c_bomb_100M.jpg",
        "d_float.tif",
        "e_grey16.png",
    ]
    errors = {name: r.error for name, r in results.items() if r.error}
    assert set(errors) == {"b_bomb_400M.jpg", "c_bomb_100M.jpg", "d_float.tif"}
    for name in ("b_bomb_400M.jpg", "c_bomb_100M.jpg"):
        assert f"{name} is a decompression bomb" in str(errors[name]), errors[name]
    assert FLOAT_REFUSED in str(errors["d_float.tif"])
    assert results["a.jpg"].label in records.CLASSES
    assert results["e_grey16.png"].label in records.CLASSES
