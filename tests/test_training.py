"""The shared training infrastructure: settings, augmentation, input pipeline, resumable fit, outputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from catsdogs.components.common import records, reports, storage
from catsdogs.components.common.errors import (
    CatsdogsError,
    GpuRequiredError,
    OutputConflictError,
    SettingsError,
)
from catsdogs.components.common.training.augmentation import (
    augmentation_layers,
    random_affine_class,
)
from catsdogs.components.common.training.checkpoint import (
    claim_output,
    delete_checkpoint,
    fit_resumable,
    output_status,
    should_stop,
)
from catsdogs.components.common.training.data import (
    default_datasets,
    fits_in_memory,
    input_pipeline,
)
from catsdogs.components.common.training.device import (
    gpu_available,
    require_gpu_or_fail,
    restore_device,
    setup_device,
)
from catsdogs.components.common.training.run import RunContext, Trained, run_training, summarize
from catsdogs.components.common.training.settings import TrainingSettings, run_identity


def small_settings(**kwargs: object) -> TrainingSettings:
    values: dict[str, object] = {"epochs": 2, "batch_size": 4, "image_size": (32, 32)}
    values.update(kwargs)
    return TrainingSettings(**values)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("epochs", 0, "epochs must be between 1"),
        ("batch_size", 0, "batch_size must be between 1"),
        ("learning_rate", 0.0, "learning_rate must be in (0, 10]"),
        ("seed", -1, "seed must be between 0"),
        ("image_size", (8, 8), "image_size must be (height, width)"),
        ("image_size", (32,), "image_size must be (height, width)"),
        ("early_stopping_patience", -1, "early_stopping_patience must be 0"),
        ("mixed_precision", "maybe", "mixed_precision must be one of auto, on, off"),
    ],
)
def test_settings_reject_bad_values(field: str, value: object, fragment: str) -> None:
    with pytest.raises(SettingsError) as error:
        TrainingSettings(**{field: value})  # type: ignore[arg-type]
    assert fragment in str(error.value)
    assert repr(value) in str(error.value) or str(value) in str(error.value)


def test_setting_errors_are_user_errors_with_one_learning_rate_range() -> None:
    with pytest.raises(SettingsError):
        TrainingSettings(epochs=0)
    assert issubclass(SettingsError, CatsdogsError)
    TrainingSettings(learning_rate=10.0)
    with pytest.raises(SettingsError, match=r"learning_rate must be in \(0, 10\], got 10.5"):
        TrainingSettings(learning_rate=10.5)


def test_settings_defaults_and_identity() -> None:
    settings = TrainingSettings()
    assert settings.image_size == (150, 150)
    assert settings.to_dict()["image_size"] == [150, 150]
    manifest = records.Manifest(("cat", "dog"), {}, (), 0, "synthetic")
    one = run_identity("k", settings, manifest)
    moved = run_identity(
        "k", TrainingSettings(checkpoint_dir="gs://b/c", require_gpu=True), manifest
    )
    assert one == moved  # where checkpoints go does not change the run
    assert one != run_identity("k", TrainingSettings(seed=1), manifest)
    assert one != run_identity("k", settings, dataclasses.replace(manifest, seed=2))


def test_require_gpu_fails_clearly_without_gpu() -> None:
    if gpu_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(GpuRequiredError, match="sees no GPU"):
        require_gpu_or_fail(True)
    require_gpu_or_fail(False)


def test_setup_device_sets_and_restores_policy() -> None:
    import keras

    before = keras.mixed_precision.global_policy().name
    info = setup_device(small_settings(mixed_precision="on"))
    try:
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        assert info.mixed_precision
    finally:
        restore_device(info)
    assert keras.mixed_precision.global_policy().name == before
    info = setup_device(small_settings(mixed_precision="auto"))
    restore_device(info)
    assert info.mixed_precision == (info.gpus > 0)


# ------------------------------------------------------------------------------ augmentation


def test_augmentation_changes_images_in_training_and_is_identity_at_inference() -> None:
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 255, (8, 40, 40, 3)).astype("float32")
    layer = augmentation_layers(seed=3)
    inference = np.asarray(layer(batch, training=False))
    np.testing.assert_array_equal(inference, batch)
    augmented = np.asarray(layer(batch, training=True))
    assert augmented.shape == batch.shape
    changed = [not np.allclose(a, b, atol=1e-3) for a, b in zip(augmented, batch, strict=True)]
    assert all(changed)
    again = np.asarray(layer(batch, training=True))
    assert not np.allclose(again, augmented)  # fresh randomness on every call
    names = [type(sub).__name__ for sub in layer.layers]
    assert names == ["RandomAffine"]
    affine = layer.layers[0]
    assert (affine.rotation, affine.shift, affine.shear, affine.zoom) == (40.0, 0.2, 0.2, 0.2)
    assert affine.horizontal_flip and affine.fill_mode == "nearest"


def test_random_affine_geometry() -> None:
    affine = random_affine_class()
    batch = np.random.default_rng(1).uniform(0, 255, (16, 20, 24, 3)).astype("float32")
    still = affine(rotation=0.0, shift=0.0, shear=0.0, zoom=0.0, horizontal_flip=False, seed=1)
    np.testing.assert_allclose(np.asarray(still(batch, training=True)), batch, atol=1e-3)
    flip = affine(rotation=0.0, shift=0.0, shear=0.0, zoom=0.0, horizontal_flip=True, seed=2)
    out = np.asarray(flip(batch, training=True))
    flipped = [np.allclose(o, b[:, ::-1], atol=1e-3) for o, b in zip(out, batch, strict=True)]
    same = [np.allclose(o, b, atol=1e-3) for o, b in zip(out, batch, strict=True)]
    assert all(f or s for f, s in zip(flipped, same, strict=True))
    assert any(flipped) and any(same)
    shifted = affine(rotation=0.0, shift=0.2, shear=0.0, zoom=0.0, horizontal_flip=False, seed=3)
    moved = np.asarray(shifted(batch, training=True))
    edges = moved[:, 0, :, :]  # nearest fill repeats edge pixels instead of leaving zeros
    assert (edges > 0).all()
    with pytest.raises(ValueError, match="fill_mode must be"):
        affine(fill_mode="mirror")


def test_augmentation_survives_save_and_load(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input(shape=(24, 24, 3))
    model = keras.Model(inputs, augmentation_layers(seed=5)(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.get_layer("augmentation").layers[0].get_config()["rotation"] == 40.0


# ------------------------------------------------------------------------------ input pipeline


def test_input_pipeline_batches_and_shuffles(tiny_dataset) -> None:
    data = tiny_dataset(per_class=5, size=36)
    with records.local_dataset(data, ("train", "val")) as (folder, manifest):
        common = {"image_size": (32, 32), "batch_size": 4, "seed": 7}
        train = input_pipeline(folder, manifest, "train", training=True, **common)
        batches = list(train.as_numpy_iterator())
        assert [len(x) for x, _ in batches] == [4, 4, 2]
        images, labels = batches[0]
        assert images.dtype == np.uint8 and images.shape == (4, 32, 32, 3)
        assert labels.dtype == np.float32 and labels.shape == (4, 1)
        assert sorted(np.concatenate([y for _, y in batches]).ravel().tolist()) == [0] * 5 + [1] * 5
        epoch2 = np.concatenate([y for _, y in train.as_numpy_iterator()]).ravel()
        same_seed = input_pipeline(folder, manifest, "train", training=True, **common)
        first = np.concatenate([y for _, y in batches]).ravel()
        np.testing.assert_array_equal(
            first, np.concatenate([y for _, y in same_seed.as_numpy_iterator()]).ravel()
        )
        assert sorted(epoch2.tolist()) == sorted(first.tolist())
        val = input_pipeline(folder, manifest, "val", training=False, **common)
        val_ids = [y for _, y in val.as_numpy_iterator()]
        ordered = records.read_split(folder, manifest, "val", (32, 32))
        expected = [int(y) for _, y in ordered.as_numpy_iterator()]
        assert np.concatenate(val_ids).ravel().astype(int).tolist() == expected
        augmented = input_pipeline(
            folder,
            manifest,
            "train",
            training=True,
            augmentation=augmentation_layers(1),
            cache_limit_bytes=0,
            **common,
        )
        x, _ = next(augmented.as_numpy_iterator())
        assert x.dtype == np.float32 and x.shape == (4, 32, 32, 3)


def test_fits_in_memory() -> None:
    assert fits_in_memory(2000, (150, 150), 1 << 30)
    assert not fits_in_memory(2000, (150, 150), 100 << 20)


# ------------------------------------------------------------------------------ output claims


def test_output_status_and_claim(tmp_path: Path) -> None:
    identity = {"kind": "k", "settings": {"epochs": 1}, "data_manifest_sha256": "x"}
    out = str(tmp_path / "out")
    assert output_status(out, identity) == "new"
    assert claim_output(out, identity, {"note": 1}) == "new"
    recorded = json.loads(Path(out, "run.json").read_text())
    assert recorded["identity"] == identity and recorded["note"] == 1
    assert claim_output(out, identity, {}) == "resume"
    Path(out, "model.keras").write_bytes(b"x")
    assert output_status(out, identity) == "complete"
    other = dict(identity, settings={"epochs": 2})
    with pytest.raises(OutputConflictError, match="holds a different run .epochs=1 there"):
        output_status(out, other)
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(OutputConflictError, match="not empty and holds no run.json"):
        claim_output(str(stranger), identity, {})
    assert sorted(p.name for p in stranger.iterdir()) == ["notes.txt"]


def test_should_stop() -> None:
    history = {"val_loss": [1.0, 0.5, 0.6, 0.7]}
    assert should_stop(history, 2)
    assert not should_stop(history, 3)
    assert not should_stop(history, 0)


# ------------------------------------------------------------------------------ resumable fit


def tiny_model(settings: TrainingSettings):
    import keras

    inputs = keras.Input(shape=(*settings.image_size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.RMSprop(settings.learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    return model


def tiny_fit(context: RunContext) -> Trained:
    with context.train_and_val() as (folder, manifest):
        train, val = default_datasets(folder, manifest, context.settings)
        result = context.fit(lambda: tiny_model(context.settings), train, val)
    return Trained(result.model, result, context.settings.epochs)


class Interrupted(Exception):
    pass


def test_fit_resumes_after_interruption(tiny_dataset, tmp_path: Path) -> None:
    data = tiny_dataset(per_class=4, size=32)
    settings = small_settings(epochs=4)
    checkpoint = str(tmp_path / "ckpt")
    identity = {"kind": "t", "settings": {}, "data_manifest_sha256": "x"}

    def stop_after_two(line: str) -> None:
        if line.startswith("Epoch 2/"):
            raise Interrupted(line)

    with records.local_dataset(data, ("train", "val")) as (folder, manifest):
        train, val = default_datasets(folder, manifest, settings)
        with pytest.raises(Interrupted):
            fit_resumable(
                lambda: tiny_model(settings),
                train,
                val,
                settings,
                checkpoint,
                identity,
                log=stop_after_two,
            )
        state = json.loads(Path(checkpoint, "state.json").read_text())
        assert state["epoch"] == 2 and len(state["history"]["loss"]) == 2
        assert sorted(p.name for p in Path(checkpoint).iterdir()) == [
            "model-epoch-00002.keras",
            "state.json",
        ]
        lines: list[str] = []
        result = fit_resumable(
            lambda: pytest.fail("must resume, not build"),
            train,
            val,
            settings,
            checkpoint,
            identity,
            log=lines.append,
        )
        assert lines[0].startswith("Resumed from epoch 2 of 4")
        assert result.resumed_from == 2
        assert {k: len(v) for k, v in result.history.items()} == {
            "loss": 4,
            "accuracy": 4,
            "val_loss": 4,
            "val_accuracy": 4,
        }
        assert result.history["loss"][:2] == state["history"]["loss"]
        steps_per_epoch = 2  # 8 images, batch 4
        assert int(result.model.optimizer.iterations.numpy()) == 4 * steps_per_epoch
        with pytest.raises(OutputConflictError, match="Checkpoint folder .* different run"):
            fit_resumable(
                lambda: tiny_model(settings),
                train,
                val,
                settings,
                checkpoint,
                dict(identity, kind="other"),
            )


def test_run_training_writes_outputs_and_early_stops(tiny_dataset, tmp_path: Path) -> None:
    data = tiny_dataset(per_class=3, size=32)
    settings = small_settings(epochs=30, early_stopping_patience=1, learning_rate=5.0)
    out = str(tmp_path / "model")
    result = run_training(
        kind="tiny", data=data, output=out, settings=settings, fit=tiny_fit, log=print
    )
    metrics = json.loads(Path(out, "metrics.json").read_text())
    history = json.loads(Path(out, "history.json").read_text())
    assert metrics == result.metrics
    assert metrics["epochs_run"] == len(history["loss"]) < 30
    assert metrics["stopped_early"] is True
    assert not Path(out, ".checkpoint").exists()
    assert Path(out, "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = reports.curves_html(Path(out, "curves.png").read_bytes(), metrics, "t")
    assert "data:image/png;base64," in html and "best_val_accuracy" in html


def test_summarize() -> None:
    history = {
        "loss": [0.7, 0.5, 0.4],
        "accuracy": [0.5, 0.7, 0.8],
        "val_loss": [0.69, 0.6, 0.65],
        "val_accuracy": [0.5, 0.75, 0.7],
    }
    out = summarize(
        history,
        epochs_planned=5,
        train_seconds=3.0,
        resumed_from=1,
        stopped_early=False,
        device="cpu",
    )
    assert out["best_val_accuracy"] == 0.75 and out["best_val_accuracy_epoch"] == 2
    assert out["best_val_loss"] == 0.6 and out["final_val_accuracy"] == 0.7
    assert out["epochs_run"] == 3 and out["seconds_per_epoch"] == 1.0


def test_delete_checkpoint_keeps_foreign_files(tmp_path: Path) -> None:
    ckpt = tmp_path / "c"
    ckpt.mkdir()
    (ckpt / "state.json").write_text("{}")
    (ckpt / "model-epoch-00003.keras").write_bytes(b"x")
    (ckpt / "other.txt").write_text("keep")
    delete_checkpoint(str(ckpt))
    assert sorted(p.name for p in ckpt.iterdir()) == ["other.txt"]
    assert storage.exists(str(ckpt / "other.txt"))


def test_delete_checkpoint_removes_phase_folders(tmp_path: Path) -> None:
    ckpt = tmp_path / "c"
    for phase in ("frozen", "fine-tune"):
        (ckpt / phase).mkdir(parents=True)
        (ckpt / phase / "state.json").write_text("{}")
        (ckpt / phase / "model-epoch-00001.keras").write_bytes(b"x")
    (ckpt / "features" / "vgg16-0123").mkdir(parents=True)
    (ckpt / "features" / "vgg16-0123" / "features.json").write_text("{}")
    delete_checkpoint(str(ckpt))
    assert sorted(p.relative_to(ckpt).as_posix() for p in ckpt.rglob("*")) == [
        "features",
        "features/vgg16-0123",
        "features/vgg16-0123/features.json",
    ]
    (ckpt / "features" / "vgg16-0123" / "features.json").unlink()
    (ckpt / "features" / "vgg16-0123").rmdir()
    (ckpt / "features").rmdir()
    (ckpt / "state.json").write_text("{}")
    delete_checkpoint(str(ckpt))
    assert not ckpt.exists()
