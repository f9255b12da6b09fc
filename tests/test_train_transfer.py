"""train_transfer: backbones, model structure per mode, features cache, weights, local and gs:// runs.

Structure and training tests use randomly initialised backbones (``weights="none"``) on 32x32
images, where VGG16 is cheap; the real ImageNet files are loaded only in the realdata tests.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from catsdogs.cli import train as cli
from catsdogs.cli.app import app
from catsdogs.components.common import storage
from catsdogs.components.common.errors import SettingsError
from catsdogs.components.train_transfer import backbones, core
from catsdogs.components.train_transfer import features as feature_cache
from typer.testing import CliRunner

from tests.conftest import MOBILENET_V2_WEIGHTS, VGG16_WEIGHTS, needs

SIZE = 32
HEAD = ["dense/kernel", "dense/bias", "p_dog/kernel", "p_dog/bias"]
BLOCK5 = [f"block5_conv{i}/{w}" for i in (1, 2, 3) for w in ("kernel", "bias")]


def fast(**kwargs: object) -> core.TransferSettings:
    values: dict = {
        "weights": "none",
        "epochs": 1,
        "fine_tune_epochs": 1,
        "batch_size": 4,
        "image_size": (SIZE, SIZE),
    }
    values.update(kwargs)
    return core.TransferSettings(**values)


def trainable(model) -> list[str]:
    return sorted(v.path for v in model.trainable_weights)


# ------------------------------------------------------------------------------- settings


def test_settings_defaults_per_backbone_and_validation() -> None:
    vgg = core.TransferSettings()
    assert (vgg.backbone, vgg.weights, vgg.mode, vgg.epochs) == (
        "vgg16",
        "imagenet",
        "features",
        30,
    )
    assert vgg.image_size == (150, 150) and vgg.resolved_pooling == "flatten"
    assert vgg.learning_rate == 2e-5 and vgg.fine_tune_learning_rate == 1e-5
    mobile = core.TransferSettings(backbone="mobilenet_v2")
    assert mobile.image_size == (224, 224) and mobile.resolved_pooling == "avg"
    assert core.TransferSettings(backbone="resnet50", image_size=(160, 160)).image_size == (
        160,
        160,
    )
    bad = {
        "mode": ("fast", "mode must be one of features, frozen, fine-tune, got 'fast'"),
        "backbone": ("alexnet", "Unknown backbone 'alexnet'"),
        "pooling": ("max", "pooling must be one of flatten, avg"),
        "image_size": ((24, 24), "image_size must be at least 32x32"),
        "dropout": (1.0, "dropout must be in [0, 1), got 1.0"),
        "fine_tune_learning_rate": (0.0, "fine_tune_learning_rate must be in (0, 10], got 0.0"),
        "epochs": (0, "epochs must be between 1 and 100000, got 0"),
    }
    for name, (value, message) in bad.items():
        with pytest.raises(SettingsError, match=re.escape(message)):
            core.TransferSettings(**{name: value})
    with pytest.raises(
        SettingsError, match="fine_tune_epochs must be at least 1 in fine-tune mode"
    ):
        core.TransferSettings(mode="fine-tune", fine_tune_epochs=0)
    core.TransferSettings(fine_tune_learning_rate=10.0)  # the range of every learning rate
    with pytest.raises(SettingsError, match=re.escape("must be in (0, 10], got 10.5")):
        core.TransferSettings(fine_tune_learning_rate=10.5)


def test_defaults_match_across_dataclass_cli_and_wrapper() -> None:
    from catsdogs.components.train_transfer.component import train_transfer

    defaults = core.TransferSettings()
    wrapper = inspect.signature(train_transfer.python_func).parameters
    command = inspect.signature(cli.train_transfer).parameters
    shared = ("backbone", "weights", "epochs", "batch_size", "seed", "checkpoint_dir")
    for name in (*shared, "mode", "require_gpu"):
        assert wrapper[name].default == getattr(defaults, name), name
    for name in (
        *shared,
        "learning_rate",
        "fine_tune_epochs",
        "fine_tune_learning_rate",
        "unfreeze_from",
        "pooling",
        "augment",
        "early_stopping_patience",
        "xla",
        "require_gpu",
    ):
        assert command[name].default == getattr(defaults, name), name
    assert command["mode"].default.value == defaults.mode
    assert command["mixed_precision"].default.value == defaults.mixed_precision
    assert command["image_size"].default == 0  # 0 = the backbone's size, as (0, 0) in the dataclass
    assert core.TransferSettings.__dataclass_fields__["image_size"].default == (0, 0)


# ------------------------------------------------------------------------------- backbones


def test_generic_backbone_rule_and_unknown_name() -> None:
    assert backbones.backbone_spec("efficientnet_b0").constructor == "EfficientNetB0"
    assert backbones.backbone_spec("densenet121").constructor == "DenseNet121"
    assert backbones.backbone_spec("mobilenet_v2").unfreeze_from == "block_16"
    with pytest.raises(SettingsError, match="Unknown backbone 'vgg17'"):
        backbones.backbone_spec("vgg17")


@pytest.mark.parametrize("name", ["vgg16", "mobilenet_v2", "resnet50", "densenet121"])
def test_preprocess_layer_equals_preprocess_input(name: str) -> None:
    spec = backbones.backbone_spec(name)
    layer = backbones.preprocess_layer(spec)
    module = importlib.import_module(backbones._constructor(spec).__module__)
    pixels = np.random.default_rng(1).integers(0, 256, (2, 5, 5, 3)).astype("float32")
    expected = np.asarray(module.preprocess_input(pixels.copy()))
    np.testing.assert_allclose(np.asarray(layer(pixels)), expected, rtol=1e-5, atol=1e-3)
    assert not layer.trainable and layer.name == f"{name}_preprocess"


def test_identity_preprocessing_adds_no_layer() -> None:
    assert backbones.preprocess_layer(backbones.backbone_spec("efficientnet_b0")) is None


# ------------------------------------------------------------------------------- structure


def test_vgg16_structure_per_mode() -> None:
    settings = fast()
    backbone, fingerprint = core.load_backbone(settings)
    assert fingerprint == "none:VGG16" and backbone.count_params() == 14_714_688
    for augment in (False, True):  # features / frozen
        model = core.build_model(backbone, settings, augment=augment)
        assert [layer.name for layer in model.layers][-3:] == ["vgg16_preprocess", "vgg16", "head"]
        assert trainable(model) == sorted(HEAD)
        assert model.input_shape == (None, SIZE, SIZE, 3) and model.output_shape == (None, 1)
        assert ("augmentation" in [layer.name for layer in model.layers]) == augment
    head = model.get_layer("head")
    assert [layer.name for layer in head.layers] == [
        "features",
        "flatten",
        "dense",
        "dropout",
        "p_dog",
    ]
    assert head.get_layer("dropout").rate == 0.5 and head.get_layer("dense").units == 256
    assert model.optimizer.__class__.__name__ == "RMSprop"
    assert float(model.optimizer.learning_rate) == pytest.approx(2e-5)
    tuned = core.unfreeze(model, settings)
    assert trainable(tuned) == sorted(HEAD + BLOCK5)
    assert float(tuned.optimizer.learning_rate) == pytest.approx(1e-5)


def test_mobilenet_v2_fine_tune_keeps_batch_norm_frozen() -> None:
    settings = fast(backbone="mobilenet_v2", mode="fine-tune")
    backbone, _ = core.load_backbone(settings)
    model = core.build_model(backbone, settings, augment=False)
    assert trainable(model) == sorted(HEAD)  # average pooling: no Flatten, same variables
    assert "flatten" not in [layer.name for layer in model.get_layer("head").layers]
    tuned = trainable(core.unfreeze(model, settings))
    backbone_vars = [name for name in tuned if name not in HEAD]
    assert backbone_vars and all(n.startswith(("block_16_", "Conv_1/")) for n in backbone_vars)
    assert not [n for n in backbone_vars if "_bn" in n.lower() or "gamma" in n or "beta" in n]
    assert "block_16_project/kernel" in tuned and "Conv_1/kernel" in tuned


def test_unfreeze_needs_a_known_block() -> None:
    settings = fast(backbone="densenet121", mode="fine-tune")
    backbone, _ = core.load_backbone(settings)
    with pytest.raises(SettingsError, match="needs --unfreeze-from"):
        backbones.unfreeze_index(backbone, settings.spec, "")
    with pytest.raises(SettingsError, match="--unfreeze-from 'nope': no layer of densenet121"):
        backbones.unfreeze_index(backbone, settings.spec, "nope")
    assert backbone.layers[backbones.unfreeze_index(backbone, settings.spec, "conv5_block16")].name


# ------------------------------------------------------------------------------- weights


def test_imagenet_offline_fails_fast_with_a_clear_message(tmp_path: Path, monkeypatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr("keras.src.backend.config._KERAS_DIR", str(tmp_path))  # empty cache
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    started = time.monotonic()
    with pytest.raises(backbones.WeightsError) as error:
        core.load_backbone(fast(weights="imagenet"))
    assert time.monotonic() - started < 20
    message = str(error.value)
    assert "Could not download the ImageNet weights of VGG16" in message
    assert "pass --weights with a local path or gs:// URI" in message
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert socket.getdefaulttimeout() is None  # the download timeout does not leak


def test_bad_weights_values(tmp_path: Path) -> None:
    assert issubclass(backbones.WeightsError, SettingsError)
    spec = backbones.KNOWN["vgg16"]
    with pytest.raises(backbones.WeightsError, match="no such file"):
        backbones.fetch_weights(str(tmp_path / "missing.h5"), spec)
    with pytest.raises(backbones.WeightsError, match="expected 'imagenet', 'none' or a path"):
        backbones.fetch_weights("imagenet21k", spec)


@pytest.mark.realdata
@needs(VGG16_WEIGHTS)
@needs(MOBILENET_V2_WEIGHTS)
def test_real_weight_files_load_and_mismatch_is_clear() -> None:
    vgg = fast(weights=str(VGG16_WEIGHTS))
    backbone, fingerprint = core.load_backbone(vgg)
    assert backbone.count_params() == 14_714_688
    assert fingerprint == (
        "sha256:5ffcc3e2b95af5308e66dbecb80d746dc9161e354eea851fbeab09a6fe1287d2"
    )
    kernel = backbone.get_layer("block1_conv1").get_weights()[0]
    assert abs(float(kernel.std()) - 0.2) < 0.2 and float(np.abs(kernel).max()) > 0.1
    mobile = fast(backbone="mobilenet_v2", weights=str(MOBILENET_V2_WEIGHTS))
    backbone, _ = core.load_backbone(mobile)
    assert backbone.count_params() == 2_257_984 and backbone.name == "mobilenet_v2"
    with pytest.raises(backbones.WeightsError, match="does not fit a notop MobileNetV2"):
        core.load_backbone(fast(backbone="mobilenet_v2", weights=str(VGG16_WEIGHTS)))


@pytest.mark.realdata
@needs(VGG16_WEIGHTS)
def test_weights_from_remote_storage_are_cached(
    remote_bucket: str, tmp_path: Path, monkeypatch
) -> None:
    bucket = remote_bucket  # gs:// and s3://
    monkeypatch.setenv("CATSDOGS_CACHE", str(tmp_path / "cache"))
    uri = f"{bucket}/w/{VGG16_WEIGHTS.name}"
    storage.upload_file(VGG16_WEIGHTS, uri)
    local, fingerprint = backbones.fetch_weights(uri, backbones.KNOWN["vgg16"])
    assert Path(local).is_relative_to(tmp_path / "cache") and Path(local).name == VGG16_WEIGHTS.name
    assert fingerprint.endswith("5ffcc3e2b95af5308e66dbecb80d746dc9161e354eea851fbeab09a6fe1287d2")
    assert backbones.fetch_weights(uri, backbones.KNOWN["vgg16"])[0] == local


# ------------------------------------------------------------------------------- training


def check_model_dir(out: str, epochs: int, mode: str) -> dict:
    import keras

    names = storage.list_files(out)
    assert {"model.keras", "history.json", "metrics.json", "curves.png", "run.json"} <= set(names)
    assert not any(n.startswith(".checkpoint") for n in names)
    history = json.loads(storage.read_text(storage.join(out, "history.json")))
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == epochs for v in history.values())
    metrics = json.loads(storage.read_text(storage.join(out, "metrics.json")))
    assert metrics["epochs_run"] == epochs and metrics["mode"] == mode
    assert metrics["best_val_accuracy"] == max(history["val_accuracy"])
    run = json.loads(storage.read_text(storage.join(out, "run.json")))
    assert run["kind"] == "train_transfer" and run["settings"]["mode"] == mode
    with storage.local_dir(out) as folder:
        model = keras.models.load_model(folder / "model.keras")
    assert "augmentation" not in [layer.name for layer in model.layers]
    pixels = np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3)).astype("uint8")
    p_dog = model.predict(pixels, verbose=0)
    assert p_dog.shape == (3, 1) and np.all((p_dog >= 0) & (p_dog <= 1))
    assert trainable(model) == sorted(HEAD + (BLOCK5 if mode == "fine-tune" else []))
    return metrics


def test_features_mode_runs_backbone_once_and_reuses_features(
    tiny_dataset, tmp_path: Path, monkeypatch
) -> None:
    data = tiny_dataset(per_class=4, size=SIZE)
    calls: list[int] = []
    real = feature_cache.extract_features

    def counting(extractor, images, **options):
        features, labels = real(extractor, images, **options)
        calls.append(len(labels))
        return features, labels

    monkeypatch.setattr(feature_cache, "extract_features", counting)
    cache = str(tmp_path / "features")
    first = core.train_transfer(data, str(tmp_path / "a"), fast(epochs=2), features=cache)
    assert calls == [8, 8, 8]  # train, val, test: each image through the backbone once
    metrics = check_model_dir(first.output, 2, "features")
    assert "test_accuracy_from_features" not in metrics  # evaluate alone scores the test split
    folder = Path(metrics["features"])
    meta = json.loads((folder / "features.json").read_text())
    assert meta["key"]["backbone"] == "vgg16" and meta["key"]["image_size"] == [SIZE, SIZE]
    assert meta["key"]["weights"] == "none:VGG16" and meta["splits"]["train"]["shape"] == [
        1,
        1,
        512,
    ]
    with np.load(folder / "train.npz") as arrays:
        assert arrays["features"].shape == (8, 1, 1, 512) and arrays["labels"].shape == (8, 1)

    other = fast(learning_rate=1e-3, dropout=0.2)  # another head: the features are reused
    core.train_transfer(data, str(tmp_path / "b"), other, features=cache)
    assert calls == [8, 8, 8]
    core.train_transfer(data, str(tmp_path / "c"), fast(image_size=(40, 40)), features=cache)
    assert calls == [8, 8, 8, 8, 8, 8]  # another image size: new features
    assert len(list(Path(cache).iterdir())) == 2


def test_frozen_mode_trains_head_only(tiny_dataset, tmp_path: Path, monkeypatch) -> None:
    import keras

    data = tiny_dataset(per_class=4, size=SIZE)
    real, before = core.load_backbone, {}

    def recording(settings, **options):
        backbone, fingerprint = real(settings, **options)
        if not before:  # the run's backbone (inference_model builds a blank one to copy into)
            before.update({w.path: np.array(w) for w in backbone.weights})
        return backbone, fingerprint

    monkeypatch.setattr(core, "load_backbone", recording)
    result = core.train_transfer(data, str(tmp_path / "m"), fast(mode="frozen"))
    check_model_dir(result.output, 1, "frozen")
    saved = keras.models.load_model(tmp_path / "m" / "model.keras")
    backbone = saved.get_layer(fast().spec.constructor.lower())
    after = {w.path: np.array(w) for w in backbone.weights}
    assert before and set(after) == set(before)  # the very backbone the run was given
    moved = [path for path, value in after.items() if not np.array_equal(value, before[path])]
    assert moved == []  # frozen: not one backbone weight changed in training


def test_fine_tune_resumes_after_a_failure_between_phases(
    tiny_dataset, tmp_path: Path, monkeypatch
) -> None:
    data = tiny_dataset(per_class=4, size=SIZE)
    out = str(tmp_path / "m")
    settings = fast(mode="fine-tune")
    real = core.unfreeze

    def crash(model, settings):
        raise RuntimeError("node preempted")

    monkeypatch.setattr(core, "unfreeze", crash)
    with pytest.raises(RuntimeError, match="node preempted"):
        core.train_transfer(data, out, settings)
    assert (tmp_path / "m" / ".checkpoint" / "frozen" / "state.json").is_file()
    monkeypatch.setattr(core, "unfreeze", real)
    lines: list[str] = []
    result = core.train_transfer(data, out, settings, log=lines.append)
    assert any(line.startswith("Resumed from epoch 1 of 1") for line in lines)
    metrics = check_model_dir(result.output, 2, "fine-tune")
    assert metrics["fine_tune_from_epoch"] == 2 and metrics["epochs_planned"] == 2
    assert not (tmp_path / "m" / ".checkpoint").exists()
    assert core.train_transfer(data, out, settings).status == "complete"


def test_fine_tune_starts_from_a_finished_features_model(
    tiny_dataset, tmp_path: Path, monkeypatch
) -> None:
    from catsdogs.components.common import model_dir

    data = tiny_dataset(per_class=4, size=SIZE)
    start = core.train_transfer(data, str(tmp_path / "features"), fast(epochs=2))
    trained_head = model_dir.load_model(start.output).get_layer("head").get_weights()
    seen: list[list[np.ndarray]] = []
    real = core.unfreeze

    def spy(model, settings):
        seen.append(model.get_layer("head").get_weights())
        return real(model, settings)

    monkeypatch.setattr(core, "unfreeze", spy)
    lines: list[str] = []
    settings = fast(mode="fine-tune", start_from=start.output)
    result = core.train_transfer(data, str(tmp_path / "tuned"), settings, log=lines.append)
    assert len(seen) == 2  # the start of fine-tuning, then the inference model it saves
    for got, expected in zip(seen[0], trained_head, strict=True):
        np.testing.assert_array_equal(got, expected)
    assert any(line.startswith("Starting from the finished model") for line in lines)
    assert not [line for line in lines if line.startswith("Epoch 1/2")]  # no frozen phase rerun
    metrics = check_model_dir(result.output, 3, "fine-tune")
    assert metrics["fine_tune_from_epoch"] == 3 and metrics["start_from"] == start.output
    with pytest.raises(SettingsError, match="start_from is for fine-tune mode only"):
        fast(mode="frozen", start_from=start.output)
    other = fast(mode="fine-tune", start_from=start.output, image_size=(64, 64))
    with pytest.raises(SettingsError, match="is not a vgg16 transfer model of image size"):
        core.train_transfer(data, str(tmp_path / "bad"), other)


@pytest.mark.gcs
def test_features_and_fine_tune_from_and_to_gcs(tiny_dataset, bucket: str) -> None:
    data = tiny_dataset(per_class=3, size=SIZE, output=f"{bucket}/data")
    result = core.train_transfer(
        data, f"{bucket}/features-model", fast(), features=f"{bucket}/features"
    )
    check_model_dir(result.output, 1, "features")
    assert any(n.endswith("/features.json") for n in storage.list_files(f"{bucket}/features"))
    settings = fast(mode="fine-tune", checkpoint_dir=f"{bucket}/ckpt")
    result = core.train_transfer(data, f"{bucket}/tuned-model", settings)
    check_model_dir(result.output, 2, "fine-tune")
    assert not storage.is_dir(f"{bucket}/ckpt")


def test_wrapper_with_real_artifacts(tiny_dataset, tmp_path: Path, monkeypatch) -> None:
    from catsdogs.components.train_transfer.component import train_transfer
    from kfp import dsl

    data = tiny_dataset(per_class=3, size=SIZE)
    real = core.TransferSettings

    def small(**kwargs: object) -> core.TransferSettings:
        assert kwargs["epochs"] == 1 and kwargs["weights"] == "none"
        return real(image_size=(SIZE, SIZE), **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(core, "TransferSettings", small)
    model = dsl.Model(uri=str(tmp_path / "model"), name="model")
    features = dsl.Dataset(uri=str(tmp_path / "features"), name="features")
    metrics = dsl.Metrics(uri=str(tmp_path / "metrics"), name="metrics")
    curves = dsl.HTML(uri=str(tmp_path / "curves.html"), name="curves")
    best = train_transfer.python_func(
        data=dsl.Dataset(uri=data, name="data"),
        model=model,
        features=features,
        metrics=metrics,
        curves=curves,
        weights="none",
        epochs=1,
        batch_size=6,
    )
    saved = check_model_dir(model.path, 1, "features")
    assert best == saved["best_val_accuracy"] == metrics.metadata["best_val_accuracy"]
    assert list(Path(features.path).glob("vgg16-*/features.json"))
    assert Path(curves.path).read_text().startswith("<!doctype html>")


def test_cli_user_errors_exit_2_and_write_nothing(
    tiny_dataset, tmp_path: Path, monkeypatch
) -> None:
    runner = CliRunner()
    data = tiny_dataset(per_class=2, size=SIZE)
    out = tmp_path / "o"
    base = ["train-transfer", "--data", data, "--output", str(out), "--image-size", str(SIZE)]
    result = runner.invoke(app, [*base, "--backbone", "alexnet"])
    assert result.exit_code == 2 and "Unknown backbone 'alexnet'" in result.output
    result = runner.invoke(app, [*base, "--weights", str(tmp_path / "nope.h5")])
    assert result.exit_code == 2 and "no such file" in result.output
    result = runner.invoke(app, ["train-transfer", "--data", str(tmp_path), "--output", str(out)])
    assert result.exit_code == 2 and "has no manifest.json" in result.output

    def no_network(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr("keras.src.backend.config._KERAS_DIR", str(tmp_path / "keras"))
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    result = runner.invoke(app, base)  # --weights imagenet by default
    assert result.exit_code == 2
    assert "looks offline: pass --weights with a local path or gs:// URI" in result.output
    assert not out.exists()


@needs(VGG16_WEIGHTS)
def test_imagenet_uses_weights_baked_into_the_image(tmp_path: Path, monkeypatch) -> None:
    spec = backbones.backbone_spec("vgg16")
    baked = tmp_path / "models"
    baked.mkdir()
    (baked / spec.weights_file).symlink_to(VGG16_WEIGHTS)
    monkeypatch.setenv("CATSDOGS_WEIGHTS_DIR", str(baked))
    path, fingerprint = backbones.fetch_weights("imagenet", spec)
    assert path == str(baked / spec.weights_file)
    assert fingerprint.startswith("sha256:") and len(fingerprint) == len("sha256:") + 64
    monkeypatch.setenv("CATSDOGS_WEIGHTS_DIR", str(tmp_path / "empty"))
    assert backbones.fetch_weights("imagenet", spec) == ("imagenet", "imagenet:VGG16")


def test_bad_unfreeze_from_and_a_features_file_fail_before_any_work(
    tiny_dataset, tmp_path: Path
) -> None:
    from catsdogs.components.common.errors import OutputConflictError

    data = tiny_dataset(per_class=2, size=SIZE)
    out = tmp_path / "m"
    with pytest.raises(SettingsError, match="--unfreeze-from 'nope': no layer of vgg16"):
        core.train_transfer(data, str(out), fast(mode="fine-tune", unfreeze_from="nope"))
    assert not out.exists()  # no frozen phase ran, so the rerun with the right value is no conflict
    features = tmp_path / "features"
    features.write_text("a file")
    with pytest.raises(OutputConflictError, match="--features .* is not a folder"):
        core.train_transfer(data, str(out), fast(), features=str(features))
    assert not out.exists()
    base = ["train-transfer", "--data", data, "--output", str(out), "--weights", "none"]
    runner = CliRunner()
    bad = runner.invoke(app, [*base, "--mode", "fine-tune", "--unfreeze-from", "nope"])
    assert bad.exit_code == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.output
    assert "--unfreeze-from 'nope': no layer of vgg16" in bad.stderr
    file = runner.invoke(app, [*base, "--features", str(features)])
    assert file.exit_code == 2 and len(file.stderr.strip().splitlines()) == 1, file.output
    assert f"--features {features} is not a folder" in file.stderr
    assert not out.exists()
