"""predict: files, folders and gs:// prefixes, with bad files reported and the batch finishing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from catsdogs.components.common import images, storage
from catsdogs.components.predict import core as predictor
from typer.testing import CliRunner

from tests.conftest import ORIGINAL_SIZE, needs
from tests.tiny_models import flat_model, save_model_dir, write_jpeg


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_model_dir(flat_model(bias=0.3), tmp_path_factory.mktemp("predict") / "model")


def test_decode_applies_exif_orientation_and_rgb(tmp_path):
    rotated = write_jpeg(tmp_path / "rotated.jpg", size=40, exif_rotate=True)
    pixels = images.load(str(rotated))
    assert pixels.shape == (48, 40, 3) and pixels.dtype == np.uint8  # 40x48 stored, turned 90°
    from PIL import Image

    Image.new("L", (10, 12), 128).save(tmp_path / "gray.png")
    assert images.load(str(tmp_path / "gray.png")).shape == (12, 10, 3)
    with pytest.raises(images.ImageError, match="not a decodable image"):
        images.decode(b"\x89PNG truncated", "x.png")


def test_predict_folder_with_a_bad_file(tmp_path, model_dir):
    import keras

    folder = tmp_path / "photos"
    write_jpeg(folder / "a.jpg", seed=1)
    write_jpeg(folder / "sub" / "b.jpeg", seed=2)
    (folder / "broken.jpg").write_bytes(b"garbage")
    (folder / "notes.txt").write_text("not an image, not listed")
    single = write_jpeg(tmp_path / "c.jpg", seed=3)
    inputs = [str(folder), str(single), str(tmp_path / "missing.jpg")]
    results = list(predictor.predict(model_dir, inputs))
    assert [Path(r.image).name for r in results] == [
        "a.jpg",
        "broken.jpg",
        "b.jpeg",
        "c.jpg",
        "missing.jpg",
    ]
    errors = {Path(r.image).name: r.error for r in results if r.error}
    assert set(errors) == {"broken.jpg", "missing.jpg"}
    assert "not a decodable image" in errors["broken.jpg"]
    assert "does not exist" in errors["missing.jpg"]
    model = keras.models.load_model(Path(model_dir, "model.keras"))
    for result in results:
        if result.error:
            continue
        view = images.resize(images.load(result.image), (32, 32))
        expected = float(model.predict(view[None], verbose=0)[0, 0])
        assert result.positive == pytest.approx(expected, rel=1e-5)
        assert result.label == ("dog" if expected >= 0.5 else "cat")
        assert result.probability == pytest.approx(max(expected, 1 - expected), rel=1e-5)


def test_predict_gcs_prefix(bucket, tmp_path, model_dir):
    for name in ("x.jpg", "y.jpg"):
        storage.upload_file(write_jpeg(tmp_path / name), f"{bucket}/photos/{name}")
    storage.write_bytes(f"{bucket}/photos/z.png", b"nope")
    storage.upload_dir(model_dir, f"{bucket}/model")
    results = list(predictor.predict(f"{bucket}/model", [f"{bucket}/photos"]))
    assert [r.image for r in results] == [
        f"{bucket}/photos/{n}" for n in ("x.jpg", "y.jpg", "z.png")
    ]
    assert [r.error is None for r in results] == [True, True, False]
    only = list(predictor.predict(f"{bucket}/model", [f"{bucket}/photos/y.jpg"]))
    assert len(only) == 1 and only[0].positive == results[1].positive
    empty = list(predictor.predict(f"{bucket}/model", [f"{bucket}/nothing/"]))
    assert empty[0].error and "no image files" in empty[0].error


def test_cli_predict_text_jsonl_and_exit_codes(tmp_path, model_dir):
    from catsdogs.cli.app import app

    good = write_jpeg(tmp_path / "good.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    runner = CliRunner()
    ok = runner.invoke(app, ["predict", "--model", model_dir, str(good)])
    assert ok.exit_code == 0, ok.output
    label, probability, name = ok.stdout.strip().split("\t")
    assert label in ("cat", "dog") and 0.5 <= float(probability) <= 1 and name == str(good)
    mixed = runner.invoke(app, ["predict", "--model", model_dir, "--jsonl", str(bad), str(good)])
    assert mixed.exit_code == 1  # the batch finished, but one image failed
    lines = [json.loads(line) for line in mixed.stdout.strip().splitlines()]
    assert lines[0]["image"] == str(bad) and "not a decodable image" in lines[0]["error"]
    assert lines[1]["label"] == label and set(lines[1]) == {
        "image",
        "label",
        "probability",
        "p_dog",
    }
    assert "1 image(s) could not be read" in mixed.stderr
    text = runner.invoke(app, ["predict", "--model", model_dir, str(bad), str(good)])
    assert text.exit_code == 1 and text.stderr.startswith(f"ERROR\t{bad}")
    assert text.stdout.strip().endswith(str(good))
    no_model = runner.invoke(app, ["predict", "--model", str(tmp_path), str(good)])
    assert no_model.exit_code == 2 and "has no model.keras" in no_model.stderr
    assert len(no_model.stderr.strip().splitlines()) == 1


@pytest.mark.realdata
@needs(ORIGINAL_SIZE)
def test_predict_real_original_size_photos(model_dir):
    photos = sorted(str(p) for p in ORIGINAL_SIZE.glob("*.jpg"))[:3]
    photos += sorted(str(p) for p in ORIGINAL_SIZE.glob("dog.*.jpg"))[:3]
    results = list(predictor.predict(model_dir, photos))
    assert [r.image for r in results] == photos
    assert all(r.error is None and 0.5 <= r.probability <= 1.0 for r in results)
