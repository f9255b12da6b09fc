"""render_activations: layer grids, chosen channels, Grad-CAM, curves and the HTML page."""

from __future__ import annotations

import base64
import inspect
import io
import re
from pathlib import Path

import numpy as np
import pytest
from catsdogs.components.common.errors import SettingsError
from catsdogs.components.common.model_dir import load_model
from catsdogs.components.render_activations import core, layers, pictures
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import TRAIN_6000, VGG16_WEIGHTS, needs
from tests.tiny_models import flat_model, nested_model, save_model_dir, write_jpeg


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("render-models")
    return {
        "flat": save_model_dir(flat_model(), root / "flat"),
        "nested": save_model_dir(nested_model(), root / "nested", history=None),
    }


def test_normalize_channels_each_on_its_own_and_dead_black():
    activation = np.zeros((2, 2, 3))
    activation[..., 0] = [[0, 1], [2, 4]]
    activation[..., 1] = [[100, 100], [100, 300]]
    # channel 2 is dead (constant 0)
    scaled = pictures.normalize_channels(activation)
    assert scaled[..., 0].tolist() == [[0, 64], [128, 255]]
    assert scaled[..., 1].tolist() == [[0, 0], [0, 255]]
    assert scaled[..., 2].max() == 0
    grid = pictures.channel_grid(activation, columns=2, min_cell=4)
    # 2 columns x 2 rows of 4x4 cells with 1-pixel gaps; the dead channel's cell is black.
    assert grid.shape == (9, 9, 3)
    assert grid[5:9, 0:4].max() == 0
    assert grid[0:4, 0:4].max() > 0


def test_layer_discovery_flat_and_nested(model_dirs):
    flat = layers.activation_layers(load_model(model_dirs["flat"]))
    assert [r.path for r in flat] == ["conv1", "pool1", "conv2", "pool2"]
    nested = layers.activation_layers(load_model(model_dirs["nested"]))
    assert [r.path for r in nested] == [
        "vgg16_preprocess",
        "vgg16/block1_conv1",
        "vgg16/block1_pool",
        "vgg16/block2_conv1",
        "vgg16/block2_pool",
    ]
    assert layers.default_layer(nested).path == "vgg16/block1_conv1"
    assert layers.find_layer(nested, "block2_conv1").path == "vgg16/block2_conv1"
    with pytest.raises(SettingsError, match=r"valid: vgg16_preprocess, vgg16/block1_conv1"):
        layers.find_layer(nested, "dense")


def test_nested_probe_matches_a_manual_forward_pass(model_dirs):
    model = load_model(model_dirs["nested"])
    refs = layers.activation_layers(model)
    batch = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    values = layers.build_probe(model, refs)(batch)
    backbone = model.get_layer("vgg16")
    pre = model.get_layer("vgg16_preprocess")(batch)
    first = backbone.get_layer("block1_conv1")(pre)
    np.testing.assert_allclose(values["vgg16/block1_conv1"], first, rtol=1e-5, atol=1e-6)
    assert values["vgg16/block2_pool"].shape == (1, 8, 8, 9)
    heatmap, probability = layers.grad_cam(model, refs[3], batch)
    assert heatmap.shape == (16, 16) and 0.0 <= heatmap.min() and heatmap.max() <= 1.0
    assert probability == pytest.approx(float(model(batch)[0, 0]), rel=1e-5)


def _embedded_images(page: str) -> list[bytes]:
    """The pictures index.html embeds (PNG curves, JPEG copies of everything else)."""
    return [
        base64.b64decode(b)
        for b in re.findall(r"data:image/(?:png|jpeg);base64,([A-Za-z0-9+/=]+)", page)
    ]


def _size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


def test_render_flat_model_from_test_split(tmp_path, tiny_dataset, model_dirs):
    data = tiny_dataset(per_class=3, size=40)
    out = tmp_path / "render"
    result = core.render(model_dirs["flat"], str(out), data_uri=data)
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(folders) == 4  # 2 per class
    assert sum(f.split("-", 1)[1].startswith("cat") for f in folders) == 2
    first = out / folders[0]
    assert sorted(p.name for p in (first / "layers").iterdir()) == [
        "01-conv1.png",
        "02-pool1.png",
        "03-conv2.png",
        "04-pool2.png",
    ]
    # The seed's choice: channels 4 and 7 of the first convolution, enlarged.
    assert (first / "channel-conv1-4.png").is_file() and (first / "channel-conv1-7.png").is_file()
    assert (first / "gradcam.png").is_file() and (first / "input.png").is_file()
    with Image.open(first / "layers" / "01-conv1.png") as grid:
        # conv1: 30x30 maps, 8 channels in one row, each upscaled 2x to >= 32 px, 1-px gaps.
        assert grid.size == (8 * 60 + 7, 60)
    assert (out / "curves.png").is_file()
    page = (out / "index.html").read_text()
    embedded = _embedded_images(page)
    assert len(embedded) == len(result.files) - 1  # a copy of every PNG file, and only them
    # Same pictures at the same sizes (the page's copies are JPEG, the files lossless PNG).
    assert sorted(map(_size, embedded)) == sorted(_size(p.read_bytes()) for p in out.rglob("*.png"))
    assert len(result.predictions) == 4 and all(0 <= p["p"] <= 1 for p in result.predictions)


def test_render_nested_model_on_gcs_with_chosen_channels(bucket, tmp_path, model_dirs):
    from catsdogs.components.common import storage

    image = write_jpeg(tmp_path / "photo.jpg", size=48)
    storage.upload_file(image, f"{bucket}/in/photo.jpg")
    settings = core.RenderSettings(layer="block2_conv1", channels=(0, 8))
    result = core.render(
        model_dirs["nested"], f"{bucket}/render", [f"{bucket}/in/photo.jpg"], config=settings
    )
    names = storage.list_files(f"{bucket}/render")
    assert "01-photo/channel-vgg16_block2_conv1-0.png" in names
    assert "01-photo/channel-vgg16_block2_conv1-8.png" in names
    assert "01-photo/layers/02-vgg16_block1_conv1.png" in names
    assert "01-photo/gradcam.png" in names and "index.html" in names
    assert "curves.png" not in names  # the nested model has no history.json
    assert len(result.files) == len(names)
    with pytest.raises(SettingsError, match="has 9 channels"):
        core.render(
            model_dirs["nested"],
            str(tmp_path / "x"),
            [str(image)],
            config=core.RenderSettings(layer="block2_conv1", channels=(9,)),
        )


def test_default_channels_are_clipped(model_dirs):
    refs = layers.activation_layers(load_model(model_dirs["nested"]))
    assert core.resolve_channels(refs[1], 5, ()) == [4]  # 4 and 7 -> 4, 4 with 5 channels
    assert core.resolve_channels(refs[1], 64, ()) == [4, 7]


def test_wrapper_writes_html(tmp_path, tiny_dataset, model_dirs):
    from catsdogs.cli import evaluate as cli
    from catsdogs.components.render_activations.component import render_activations
    from kfp import dsl

    data = tiny_dataset(per_class=1, size=32)
    report = dsl.HTML(uri=str(tmp_path / "report.html"), name="report")
    render_activations.python_func(
        model=dsl.Model(uri=model_dirs["nested"], name="model"),
        data=dsl.Dataset(uri=data, name="data"),
        report=report,
        pictures=dsl.Artifact(uri=str(tmp_path / "pictures"), name="pictures"),
        layer="vgg16/block1_pool",
        channels="1,2",
    )
    page = Path(report.path).read_text()
    assert "vgg16/block1_pool, channel 2" in page and "Grad-CAM at vgg16/block2_conv1" in page
    assert len(_embedded_images(page)) == 2 * (
        2 + 2 + 5
    )  # 2 images: input+cam, 2 channels, 5 layers
    defaults = core.RenderSettings()
    wrapper = inspect.signature(render_activations.python_func).parameters
    assert wrapper["layer"].default == defaults.layer
    assert core.parse_channels(wrapper["channels"].default) == defaults.channels
    command = inspect.signature(cli.render).parameters
    assert command["layer"].default == defaults.layer
    assert command["images_per_class"].default == defaults.images_per_class
    assert tuple(command["channel"].default or ()) == defaults.channels


def test_cli_render_and_errors(tmp_path, model_dirs):
    from catsdogs.cli.app import app

    image = write_jpeg(tmp_path / "cat.jpg")
    runner = CliRunner()
    base = ["render", "--model", model_dirs["flat"], "--output", str(tmp_path / "out")]
    ok = runner.invoke(app, [*base, "--image", str(image), "--layer", "conv2", "--channel", "5"])
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "out" / "01-cat" / "channel-conv2-5.png").is_file()
    unknown = runner.invoke(app, [*base, "--image", str(image), "--layer", "conv9"])
    assert unknown.exit_code == 2
    assert "valid: conv1, pool1, conv2, pool2" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    bad_image = runner.invoke(app, [*base, "--image", str(broken)])
    assert bad_image.exit_code == 2 and "broken.jpg is not a decodable image" in bad_image.stderr
    nothing = runner.invoke(app, base)
    assert nothing.exit_code == 2 and "give --image" in nothing.stderr
    no_model = runner.invoke(
        app, ["render", "--model", str(tmp_path), "--output", "o", "--image", str(image)]
    )
    assert no_model.exit_code == 2 and "has no model.keras" in no_model.stderr


def test_large_maps_are_shrunk_in_the_grid():
    activation = np.random.default_rng(0).uniform(size=(150, 150, 20))
    grid = pictures.channel_grid(activation, columns=16, max_cell=96)
    assert grid.shape == (2 * 96 + 1, 16 * 96 + 15, 3)


def test_fit_jpegs_shares_the_budget_small_first_and_leaves_out_what_cannot_fit():
    rng = np.random.default_rng(0)
    noise = {f"n{i}": rng.integers(0, 255, (400, 400, 3), dtype=np.uint8) for i in range(3)}
    flat = {"flat": np.full((50, 50, 3), 128, np.uint8)}
    whole = {k: len(core.images.jpeg_bytes(v)) for k, v in {**noise, **flat}.items()}
    budget = whole["flat"] + sum(whole[k] for k in noise) // 4
    fitted = pictures.fit_jpegs({**noise, **flat}, budget)
    assert sum(map(len, fitted.values())) <= budget
    assert fitted["flat"] == core.images.jpeg_bytes(flat["flat"])  # small: whole
    assert all(_size(fitted[k])[0] < 400 for k in noise)  # large: shrunk
    assert pictures.fit_jpegs(noise, 100) == {}  # nothing fits: all left out


def test_page_stays_within_its_budget_and_files_keep_full_resolution(
    tmp_path, tiny_dataset, model_dirs
):
    data = tiny_dataset(per_class=2, size=64)
    full = core.render(model_dirs["nested"], str(tmp_path / "full"), data_uri=data)
    big = (tmp_path / "full" / "index.html").stat().st_size
    out = tmp_path / "small"
    config = core.RenderSettings(page_bytes=60_000)
    small = core.render(model_dirs["nested"], str(out), data_uri=data, config=config)
    assert big > 60_000, "the test needs a page over the budget"
    page = (out / "index.html").read_text()
    assert len(page.encode()) <= 60_000
    assert small.files == full.files
    for name in small.files[:-1]:  # the PNGs are the same full-resolution files
        assert (out / name).read_bytes() == (tmp_path / "full" / name).read_bytes()
    with pytest.raises(SettingsError, match="page_bytes must be >= 50000"):
        core.RenderSettings(page_bytes=1000)


@needs(VGG16_WEIGHTS)
@needs(TRAIN_6000)
def test_vgg16_report_of_render_data_defaults_is_under_3_mb(tmp_path):
    """The KFP UI loads the HTML artifact whole: the real VGG16 with default settings fits 3 MB."""
    import shutil

    from catsdogs.cli.app import app
    from catsdogs.components.prepare_dataset import core as prepare
    from catsdogs.components.prepare_dataset.settings import PrepareSettings
    from catsdogs.components.train_transfer import core as transfer

    photos = tmp_path / "photos"
    photos.mkdir()
    for label in ("cat", "dog"):
        for number in range(4):
            shutil.copy(TRAIN_6000 / f"{label}.{number}.jpg", photos)
    data = str(tmp_path / "data")
    split = PrepareSettings(train_per_class=1, val_per_class=1, test_per_class=2)
    prepare.prepare(str(photos), data, split, progress=False)
    settings = transfer.TransferSettings(weights=str(VGG16_WEIGHTS))
    backbone, _ = transfer.load_backbone(settings)
    model = save_model_dir(transfer.build_model(backbone, settings, augment=False), tmp_path / "m")
    out = tmp_path / "render"
    result = CliRunner().invoke(
        app, ["render", "--model", model, "--output", str(out), "--data", data]
    )
    assert result.exit_code == 0, result.output
    page = (out / "index.html").read_bytes()
    assert len(page) < 3_000_000
    grids = sorted(out.glob("*/layers/*.png"))
    assert len(grids) == 4 * 19  # 4 test images; VGG16's preprocessing, 13 conv and 5 pool layers
    assert len(_embedded_images(page.decode())) >= len(grids)  # every grid still on the page
