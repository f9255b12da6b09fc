"""train_scratch: the seed's model, training on tiny data (local and gs://), resume after SIGKILL."""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from catsdogs.cli import train as cli
from catsdogs.cli.app import app
from catsdogs.components.common import records, storage
from catsdogs.components.common.errors import OutputConflictError, SettingsError
from catsdogs.components.train_scratch import core
from typer.testing import CliRunner

SIZE = 48  # the smallest square input the model's four conv+pool stages accept is 46
FAST = {"epochs": 2, "batch_size": 4, "image_size": (SIZE, SIZE)}


def test_model_is_the_seeds() -> None:
    model = core.build_model(core.ScratchSettings())
    assert model.count_params() == 3_453_121
    assert tuple(model.input_shape) == (None, 150, 150, 3)
    assert tuple(model.output_shape) == (None, 1)
    names = [layer.name for layer in model.layers]
    assert names == [
        "image",
        "resize",
        "rescale",
        "augmentation",
        "conv1",
        "pool1",
        "conv2",
        "pool2",
        "conv3",
        "pool3",
        "conv4",
        "pool4",
        "flatten",
        "dropout",
        "dense",
        "p_dog",
    ]
    convs = [model.get_layer(f"conv{i}") for i in range(1, 5)]
    assert [c.filters for c in convs] == [32, 64, 128, 128]
    assert all(c.kernel_size == (3, 3) and c.activation.__name__ == "relu" for c in convs)
    assert model.get_layer("dropout").rate == 0.5
    assert model.get_layer("dense").units == 512
    assert model.get_layer("p_dog").activation.__name__ == "sigmoid"
    assert type(model.optimizer).__name__ == "RMSprop"
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(1e-4)
    assert model.loss == "binary_crossentropy"


def test_model_takes_raw_pixels_and_is_deterministic_at_inference() -> None:
    model = core.build_model(core.ScratchSettings(image_size=(SIZE, SIZE)))
    pixels = np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3)).astype("uint8")
    first = np.asarray(model(pixels, training=False))
    assert first.shape == (3, 1) and ((first >= 0) & (first <= 1)).all()
    np.testing.assert_array_equal(first, np.asarray(model(pixels, training=False)))
    assert not np.allclose(first, np.asarray(model(pixels, training=True)))


def test_xla_moves_augmentation_into_the_input_pipeline(tiny_dataset) -> None:
    settings = core.ScratchSettings(image_size=(SIZE, SIZE), batch_size=4, xla=True)
    model = core.build_model(settings)
    assert "augmentation" not in [layer.name for layer in model.layers]
    assert model.jit_compile
    with records.local_dataset(tiny_dataset(per_class=2, size=SIZE), ("train", "val")) as (
        folder,
        manifest,
    ):
        train, val = core.datasets(folder, manifest, settings)
        x, _ = next(train.as_numpy_iterator())
        assert x.dtype == np.float32  # augmented (uint8 in, float out)
        assert next(val.as_numpy_iterator())[0].dtype == np.uint8
        plain, _ = core.datasets(folder, manifest, core.ScratchSettings(image_size=(SIZE, SIZE)))
        assert next(plain.as_numpy_iterator())[0].dtype == np.uint8


def keras2_apply_transform(image, theta, tx, ty, shear, zx, zy, flip):
    """Keras 2's ImageDataGenerator.apply_transform (keras_preprocessing 1.1), channels last.

    ``apply_affine_transform(x, theta, tx, ty, shear, zx, zy, row_axis=0, col_axis=1,
    channel_axis=2, fill_mode='nearest', order=1)`` then ``flip_axis(x, 1)``, transcribed.
    """
    from scipy import ndimage

    theta = np.deg2rad(theta)
    rotation = np.array(
        [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
    )
    shift = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]])
    shear = np.deg2rad(shear)
    shear_matrix = np.array([[1, -np.sin(shear), 0], [0, np.cos(shear), 0], [0, 0, 1]])
    zoom = np.array([[zx, 0, 0], [0, zy, 0], [0, 0, 1]])
    matrix = rotation @ shift @ shear_matrix @ zoom
    h, w = image.shape[:2]
    o_x, o_y = float(h) / 2 + 0.5, float(w) / 2 + 0.5  # transform_matrix_offset_center
    offset = np.array([[1, 0, o_x], [0, 1, o_y], [0, 0, 1]])
    reset = np.array([[1, 0, -o_x], [0, 1, -o_y], [0, 0, 1]])
    matrix = offset @ matrix @ reset
    channels = [
        ndimage.affine_transform(
            image[..., c], matrix[:2, :2], matrix[:2, 2], order=1, mode="nearest", cval=0.0
        )
        for c in range(image.shape[2])
    ]
    out = np.stack(channels, axis=-1)
    return out[:, ::-1] if flip else out


@pytest.mark.parametrize(
    "params",
    [
        (25.0, 4.0, -6.0, 0.2, 0.85, 1.15, True),
        (-38.0, -5.5, 7.0, -11.5, 1.2, 0.9, False),
        (0.0, 0.0, 0.0, 0.0, 1.0, 1.0, True),
    ],
)
def test_seed_augmentation_is_keras2_image_data_generator_math(params) -> None:
    from catsdogs.components.common.training.augmentation import (
        apply_transforms,
        keras2_transforms,
    )

    height, width = 30, 40  # not square, so rows and columns cannot be swapped unnoticed
    image = np.random.default_rng(0).uniform(0, 255, (height, width, 3))
    expected = keras2_apply_transform(image, *params)
    columns = [np.array([value], "float32") for value in params[:6]]
    transforms = keras2_transforms(*columns, np.array([params[6]]), height, width)
    got = np.asarray(apply_transforms(image[None].astype("float32"), transforms))[0]
    np.testing.assert_allclose(got, expected, atol=0.01)


def test_augmentations_seed_reads_shear_in_degrees_and_strong_shears() -> None:
    from catsdogs.components.common.training.augmentation import augmentation_layers

    seed = augmentation_layers(1, kind="seed").layers[0]
    strong = augmentation_layers(1, kind="strong").layers[0]
    assert seed.shear == pytest.approx(0.2)  # ImageDataGenerator(shear_range=0.2): 0.2 degrees
    assert np.sin(np.deg2rad(strong.shear)) == pytest.approx(0.2)  # 0.2 pixel per pixel
    assert (strong.rotation, strong.shift, strong.zoom) == (40.0, 0.2, 0.2)
    with pytest.raises(SettingsError, match="augmentation must be one of seed, strong, got 'mild'"):
        core.ScratchSettings(augmentation="mild")


def test_xception_mini_is_the_books_and_loads_with_plain_keras(tmp_path: Path) -> None:
    import keras

    settings = core.ScratchSettings(architecture="xception-mini", image_size=(64, 64))
    model = core.build_model(settings)
    assert model.count_params() == 721_857  # the book's model summary (2nd ed., ch. 9.3)
    names = [layer.name for layer in model.layers]
    assert names[:5] == ["image", "resize", "rescale", "augmentation", "stem"]
    assert [model.get_layer(f"block{i}_sepconv2").filters for i in range(1, 6)] == [
        32,
        64,
        128,
        256,
        512,
    ]
    assert type(model.get_layer("block1_sepconv1")).__name__ == "SeparableConv2D"
    assert type(model.get_layer("block5_bn2")).__name__ == "BatchNormalization"
    plain = core.inference_model(model, settings)
    assert "augmentation" not in [layer.name for layer in plain.layers]
    plain.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")  # no custom objects needed
    pixels = np.random.default_rng(1).integers(0, 256, (2, 64, 64, 3)).astype("uint8")
    np.testing.assert_allclose(
        np.asarray(loaded(pixels)), np.asarray(model(pixels, training=False)), atol=1e-5
    )


def test_steps_per_epoch_cycles_through_the_split(tiny_dataset, tmp_path: Path) -> None:
    import keras

    data = tiny_dataset(per_class=4, size=SIZE)  # 8 training images: 2 batches of 4 a pass
    out = tmp_path / "model"
    settings = core.ScratchSettings(**dict(FAST, steps_per_epoch=5))
    result = core.train_scratch(data, str(out), settings)
    assert result.metrics["epochs_run"] == 2
    model = keras.models.load_model(out / "model.keras")
    assert int(model.optimizer.iterations.numpy()) == 2 * 5


def test_new_settings_validation() -> None:
    with pytest.raises(SettingsError, match="architecture must be one of seed, xception-mini"):
        core.ScratchSettings(architecture="resnet")
    with pytest.raises(SettingsError, match="steps_per_epoch must be 0 .* got -1"):
        core.ScratchSettings(steps_per_epoch=-1)
    assert core.ScratchSettings(architecture="xception-mini", image_size=(32, 32))


def test_settings_validation() -> None:
    with pytest.raises(SettingsError, match="at least 46x46 .* got \\(32, 32\\)"):
        core.ScratchSettings(image_size=(32, 32))
    with pytest.raises(SettingsError, match="dropout must be in \\[0, 1\\), got 1.0"):
        core.ScratchSettings(dropout=1.0)
    assert core.ScratchSettings().epochs == 100 and core.ScratchSettings().batch_size == 32


def test_defaults_match_across_dataclass_cli_and_wrapper() -> None:
    from catsdogs.components.train_scratch.component import train_scratch

    defaults = core.ScratchSettings()
    wrapper = inspect.signature(train_scratch.python_func).parameters
    command = inspect.signature(cli.train_scratch).parameters
    for name in ("epochs", "batch_size", "learning_rate", "seed", "checkpoint_dir", "require_gpu"):
        assert wrapper[name].default == getattr(defaults, name), name
    for name in ("architecture", "augmentation"):
        assert wrapper[name].default == command[name].default.value == getattr(defaults, name)
    assert wrapper["steps_per_epoch"].default == command["steps_per_epoch"].default == 0
    for name in (
        "epochs",
        "batch_size",
        "learning_rate",
        "seed",
        "checkpoint_dir",
        "early_stopping_patience",
        "xla",
        "require_gpu",
    ):
        assert command[name].default == getattr(defaults, name), name
    assert command["mixed_precision"].default.value == defaults.mixed_precision
    assert (command["image_size"].default,) * 2 == defaults.image_size


def check_model_dir(out: str, epochs: int) -> dict:
    names = storage.list_files(out)
    assert {"model.keras", "history.json", "metrics.json", "curves.png", "run.json"} <= set(names)
    assert not any(n.startswith(".checkpoint") for n in names)
    history = json.loads(storage.read_text(storage.join(out, "history.json")))
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == epochs for v in history.values())
    metrics = json.loads(storage.read_text(storage.join(out, "metrics.json")))
    assert metrics["epochs_run"] == epochs
    assert metrics["best_val_accuracy"] == max(history["val_accuracy"])
    assert metrics["final_val_loss"] == history["val_loss"][-1]
    run = json.loads(storage.read_text(storage.join(out, "run.json")))
    assert run["kind"] == "train_scratch" and run["classes"] == ["cat", "dog"]
    assert storage.read_bytes(storage.join(out, "curves.png"))[:4] == b"\x89PNG"
    return metrics


def test_train_local_outputs_rerun_and_conflict(tiny_dataset, tmp_path: Path) -> None:
    import keras

    data = tiny_dataset(per_class=4, size=SIZE)
    out = str(tmp_path / "model")
    result = core.train_scratch(data, out, core.ScratchSettings(**FAST))
    assert result.status == "trained"
    check_model_dir(out, 2)
    model = keras.models.load_model(Path(out, "model.keras"))
    assert "augmentation" not in [layer.name for layer in model.layers]  # identity at inference
    assert model.count_params() == core.build_model(core.ScratchSettings(**FAST)).count_params()

    def contents() -> dict[str, bytes]:  # every file, logs/ included
        return {
            str(p.relative_to(out)): p.read_bytes() for p in Path(out).rglob("*") if p.is_file()
        }

    before = contents()
    again = core.train_scratch(data, out, core.ScratchSettings(**FAST))
    assert again.status == "complete" and again.metrics == result.metrics
    with pytest.raises(OutputConflictError, match="holds a different run .*seed=1337 there"):
        core.train_scratch(data, out, core.ScratchSettings(**dict(FAST, seed=1)))
    assert contents() == before


def test_bad_datasets_fail_before_writing(tiny_dataset, tmp_path: Path) -> None:
    out = tmp_path / "model"
    not_a_dataset = tmp_path / "empty"
    not_a_dataset.mkdir()
    with pytest.raises(records.DatasetError, match="has no manifest.json"):
        core.train_scratch(str(not_a_dataset), str(out), core.ScratchSettings(**FAST))
    data = Path(tiny_dataset(per_class=2, size=SIZE))
    shard = next(data.glob("train-*.tfrecord"))
    blob = bytearray(shard.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    shard.write_bytes(bytes(blob))
    with pytest.raises(records.DatasetError, match="does not match the checksum"):
        core.train_scratch(str(data), str(out), core.ScratchSettings(**FAST))
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.gcs
def test_train_from_and_to_gcs(tiny_dataset, bucket: str) -> None:
    data = tiny_dataset(per_class=3, size=SIZE, output=f"{bucket}/data")
    out = f"{bucket}/models/scratch"
    result = core.train_scratch(
        data, out, core.ScratchSettings(**dict(FAST, epochs=1, checkpoint_dir=f"{bucket}/ckpt"))
    )
    assert result.status == "trained"
    check_model_dir(out, 1)
    assert not storage.is_dir(f"{bucket}/ckpt")


def test_wrapper_with_real_artifacts(tiny_dataset, tmp_path: Path, monkeypatch) -> None:
    from catsdogs.components.train_scratch.component import train_scratch
    from kfp import dsl

    data = tiny_dataset(per_class=3, size=150)
    real = core.ScratchSettings

    def quick(**kwargs: object) -> core.ScratchSettings:
        assert kwargs["epochs"] == 1 and kwargs["batch_size"] == 6
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(core, "ScratchSettings", quick)
    model = dsl.Model(uri=str(tmp_path / "model"), name="model")
    metrics = dsl.Metrics(uri=str(tmp_path / "metrics"), name="metrics")
    curves = dsl.HTML(uri=str(tmp_path / "curves.html"), name="curves")
    best = train_scratch.python_func(
        data=dsl.Dataset(uri=data, name="data"),
        model=model,
        metrics=metrics,
        curves=curves,
        epochs=1,
        batch_size=6,
    )
    saved = check_model_dir(model.path, 1)
    assert best == saved["best_val_accuracy"]
    assert metrics.metadata["best_val_accuracy"] == best
    assert metrics.metadata["epochs_run"] == 1.0
    page = Path(curves.path).read_text()
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page


def test_cli_user_errors_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["train-scratch", "--data", str(tmp_path), "--output", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "has no manifest.json" in result.output
    result = runner.invoke(
        app,
        [
            "train-scratch",
            "--data",
            str(tmp_path),
            "--output",
            str(tmp_path / "o"),
            "--epochs",
            "0",
        ],
    )
    assert result.exit_code == 2 and "epochs must be between 1 and 100000, got 0" in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_sigkill_then_rerun_resumes(tiny_dataset, tmp_path: Path) -> None:
    data = tiny_dataset(per_class=8, size=SIZE)
    out = tmp_path / "model"
    epochs = 25
    command = [
        sys.executable,
        "-m",
        "catsdogs.cli",
        "train-scratch",
        "--data",
        data,
        "--output",
        str(out),
        "--epochs",
        str(epochs),
        "--batch-size",
        "4",
        "--image-size",
        str(SIZE),
    ]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    state = out / ".checkpoint" / "state.json"
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )
    deadline = time.monotonic() + 90
    done = 0
    while time.monotonic() < deadline and process.poll() is None:
        if state.exists():
            done = json.loads(state.read_text())["epoch"]
            if done >= 1:
                break
        time.sleep(0.02)
    assert process.poll() is None, "training finished before it could be killed; raise epochs"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    killed_at = json.loads(state.read_text())["epoch"]
    assert 1 <= killed_at < epochs
    assert not (out / "model.keras").exists()
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    resumed = [line for line in rerun.stdout.splitlines() if line.startswith("Resumed from epoch")]
    assert len(resumed) == 1
    assert int(resumed[0].split()[3]) >= killed_at
    assert f"Epoch 1/{epochs}" not in rerun.stdout
    assert f"Epoch {epochs}/{epochs}" in rerun.stdout
    metrics = check_model_dir(str(out), epochs)
    assert metrics["resumed_from_epoch"] >= killed_at


def test_mixed_precision_run_saves_a_float32_output_model(tiny_dataset, tmp_path: Path) -> None:
    import keras

    data = tiny_dataset(per_class=2, size=SIZE)
    out = tmp_path / "model"
    before = keras.mixed_precision.global_policy().name
    result = core.train_scratch(
        data, str(out), core.ScratchSettings(**dict(FAST, epochs=1, mixed_precision="on"))
    )
    assert result.metrics["device"].endswith("mixed_float16")
    assert keras.mixed_precision.global_policy().name == before
    model = keras.models.load_model(out / "model.keras")
    assert model.get_layer("conv1").compute_dtype == "float16"
    pixels = np.zeros((1, SIZE, SIZE, 3), "uint8")
    assert np.asarray(model(pixels)).dtype == np.float32


def test_bf16_run_computes_in_bfloat16_and_outputs_float32(tiny_dataset, tmp_path: Path) -> None:
    import keras

    data = tiny_dataset(per_class=2, size=SIZE)
    out = tmp_path / "model"
    result = core.train_scratch(
        data, str(out), core.ScratchSettings(**dict(FAST, epochs=1, mixed_precision="bf16"))
    )
    assert result.metrics["device"].endswith("mixed_bfloat16")
    model = keras.models.load_model(out / "model.keras")
    assert model.get_layer("conv1").compute_dtype == "bfloat16"
    pixels = np.zeros((1, SIZE, SIZE, 3), "uint8")
    assert np.asarray(model(pixels)).dtype == np.float32


def test_component_interface() -> None:
    from catsdogs.components.train_scratch.component import train_scratch

    spec = train_scratch.component_spec
    assert set(spec.inputs) == {
        "data",
        "architecture",
        "epochs",
        "steps_per_epoch",
        "augmentation",
        "batch_size",
        "learning_rate",
        "seed",
        "checkpoint_dir",
        "require_gpu",
    }
    assert set(spec.outputs) == {"model", "metrics", "curves", "Output"}


def test_recipe_defaults_are_the_ones_the_measurements_support() -> None:
    """The scratch CNN's defaults, pinned to what docs/benchmarks.md's accuracy rows support.

    At 15 epochs (docs/benchmarks.md, the scratch candidates) bf16 tested the same as fp32
    (69.0% vs 68.8%, overlapping intervals) and the book's 100-step epoch gave the best validation
    accuracy but not a better test accuracy; no fp32 run of the full 100-epoch recipe has been
    made on our side, so ``auto`` keeps fp32 on the CPU (mixed_float16 on a GPU) and an epoch stays
    one pass. Change these only with the full-recipe rows that justify it.
    """
    from catsdogs.components.train_scratch.core import ScratchSettings

    defaults = ScratchSettings()
    assert (defaults.epochs, defaults.batch_size, defaults.learning_rate) == (100, 32, 1e-4)
    assert (defaults.augmentation, defaults.steps_per_epoch) == ("seed", 0)
    assert defaults.mixed_precision == "auto"
    assert (defaults.architecture, defaults.dropout, defaults.image_size) == (
        "seed",
        0.5,
        (150, 150),
    )
