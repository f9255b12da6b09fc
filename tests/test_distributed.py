"""Several devices on one node: MirroredStrategy over two logical CPU devices.

Each case runs in a subprocess, because logical devices must be configured before TensorFlow
initialises (this test process may have initialised it already with one device).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import make_tiny_dataset

SIZE = 48
EPOCHS = 3
PER_REPLICA_BATCH = 4
PER_CLASS = 5  # 10 training images: 2 steps an epoch with 2 replicas of 4, 3 with one

PRELUDE = """
import json, os, sys
import tensorflow as tf
replicas = int(sys.argv[1])
if replicas > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * replicas
    )
from catsdogs.components.train_scratch import core
settings = core.ScratchSettings(
    epochs={epochs}, batch_size={batch}, image_size=({size}, {size}), augment=True
)
def emit(**values):
    print("RESULT " + json.dumps(values), flush=True)
"""


def run_with(replicas: int, body: str, *args: str) -> dict:
    """Run ``PRELUDE + body`` on ``replicas`` logical CPU devices; returns what it ``emit``s."""
    prelude = PRELUDE.format(epochs=EPOCHS, batch=PER_REPLICA_BATCH, size=SIZE)
    code = prelude + textwrap.dedent(body)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(
        [sys.executable, "-c", code, str(replicas), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, done.stdout + done.stderr
    return json.loads(lines[-1].removeprefix("RESULT "))


@pytest.fixture
def data(tmp_path: Path) -> str:
    return make_tiny_dataset(tmp_path / "data", per_class=PER_CLASS, size=SIZE)


def test_two_replicas_train_with_a_global_batch_and_mirrored_weights(
    data: str, tmp_path: Path
) -> None:
    body = """
    import keras
    from catsdogs.components.common import records
    from catsdogs.components.common.training.device import setup_device, restore_device

    data, out = sys.argv[2], sys.argv[3]
    info = setup_device(settings)
    try:
        with info.strategy.scope(), records.local_dataset(data, ("train", "val")) as (f, m):
            model = core.build_model(settings)
            train, val = core.datasets(f, m, settings)
            batch = int(next(iter(train))[0].shape[0])
            steps = []

            class Count(keras.callbacks.Callback):
                def on_train_batch_end(self, index, logs=None):
                    steps.append(index)

            model.fit(train, validation_data=val, epochs=1, callbacks=[Count()], verbose=0)
            kernel = model.get_layer("conv1").kernel.value  # the tf.Variable (mirrored)
            devices = sorted({v.device for v in getattr(kernel, "values", [kernel])})
            in_sync = model.distribute_strategy.num_replicas_in_sync
    finally:
        restore_device(info)
    result = core.train_scratch(data, out, settings)
    model = keras.models.load_model(os.path.join(out, "model.keras"))
    emit(
        replicas=info.replicas,
        in_sync=in_sync,
        batch=batch,
        steps=len(steps),
        devices=devices,
        device=result.metrics["device"],
        history={k: len(v) for k, v in result.history.items()},
        output_shape=list(model.output_shape),
        input_shape=list(model.input_shape),
    )
    """
    two = run_with(2, body, data, str(tmp_path / "two"))
    one = run_with(1, body, data, str(tmp_path / "one"))
    assert two["replicas"] == two["in_sync"] == 2 and one["replicas"] == one["in_sync"] == 1
    assert two["batch"] == 2 * PER_REPLICA_BATCH and one["batch"] == PER_REPLICA_BATCH
    assert two["steps"] == 2 and one["steps"] == 3  # 10 images in global batches of 8 and 4
    assert len(two["devices"]) == 2 and all("CPU:" in d for d in two["devices"])
    assert len(one["devices"]) == 1
    assert two["device"].endswith("2 replicas") and "replicas" not in one["device"]
    expected = {"loss": EPOCHS, "accuracy": EPOCHS, "val_loss": EPOCHS, "val_accuracy": EPOCHS}
    assert two["history"] == one["history"] == expected
    assert two["output_shape"] == one["output_shape"] == [None, 1]
    assert two["input_shape"] == one["input_shape"] == [None, SIZE, SIZE, 3]


def test_feature_extraction_splits_batches_over_replicas_in_order(data: str) -> None:
    body = """
    import keras
    import numpy as np
    from catsdogs.components.common import records
    from catsdogs.components.common.training.data import input_pipeline
    from catsdogs.components.common.training.device import make_strategy
    from catsdogs.components.train_transfer.features import extract_features

    keras.utils.set_random_seed(0)
    with records.local_dataset(sys.argv[2], ("train",)) as (folder, manifest):
        def images():
            return input_pipeline(
                folder, manifest, "train", image_size=(48, 48), batch_size=3, seed=0,
                training=False, cache_limit_bytes=0,
            )
        strategy = make_strategy()
        with strategy.scope():
            inputs = keras.Input((48, 48, 3))
            x = keras.layers.Rescaling(1 / 255)(inputs)
            x = keras.layers.Conv2D(4, 3, activation="relu")(x)
            extractor = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
            features, labels = extract_features(extractor, images())
        single = [  # a plain call (predict_on_batch would run the batch on every replica)
            (np.asarray(extractor(x, training=False)), y.numpy())
            for x, y in images().unbatch().batch(1)
        ]
    expected = np.concatenate([f for f, _ in single])
    emit(
        replicas=strategy.num_replicas_in_sync,
        shape=list(features.shape),
        labels=labels.ravel().tolist(),
        expected_labels=np.concatenate([y for _, y in single]).ravel().tolist(),
        max_difference=float(np.abs(features - expected).max()),
    )
    """
    result = run_with(2, body, data)
    assert result["replicas"] == 2
    assert result["shape"] == [2 * PER_CLASS, 4]
    assert result["labels"] == result["expected_labels"]
    assert result["max_difference"] < 1e-5


def test_checkpoints_resume_across_a_change_of_replica_count(data: str, tmp_path: Path) -> None:
    body = """
    stop_after = int(sys.argv[3])

    class Stop(Exception):
        pass

    def log(message):
        print(message, flush=True)
        if message.startswith(f"Epoch {stop_after}/"):
            raise Stop(message)

    try:
        result = core.train_scratch(sys.argv[2], sys.argv[4], settings, log=log)
        emit(status=result.status, resumed=result.metrics["resumed_from_epoch"],
             epochs=len(result.history["loss"]), device=result.metrics["device"])
    except Stop:
        emit(status="stopped")
    """
    out = str(tmp_path / "model")
    assert run_with(2, body, data, "1", out) == {"status": "stopped"}
    state = json.loads(Path(out, ".checkpoint", "state.json").read_text())
    assert state["epoch"] == 1
    assert run_with(1, body, data, "2", out) == {"status": "stopped"}
    assert json.loads(Path(out, ".checkpoint", "state.json").read_text())["epoch"] == 2
    final = run_with(2, body, data, "0", out)
    assert final["status"] == "resumed" and final["resumed"] == 2
    assert final["epochs"] == EPOCHS and final["device"].endswith("2 replicas")
    assert Path(out, "model.keras").exists()
