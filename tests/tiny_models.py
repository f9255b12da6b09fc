"""Tiny Keras models saved as MODEL_DIRs, for the evaluate/render/predict/promote tests.

``flat``: raw pixels -> Rescaling -> conv1/pool1/conv2/pool2 (named like the scratch model) -> one
sigmoid unit. ``nested``: raw pixels -> a fixed 1x1 ``vgg16_preprocess`` conv -> a nested
functional backbone named ``vgg16`` (block1_conv1, block1_pool, block2_conv1, block2_pool) ->
global average pooling -> one sigmoid unit, the shape of the transfer models.
"""

from __future__ import annotations

import json
from pathlib import Path

HISTORY = {
    "loss": [0.69, 0.61],
    "accuracy": [0.52, 0.66],
    "val_loss": [0.68, 0.64],
    "val_accuracy": [0.55, 0.62],
}


def flat_model(size: int = 32, seed: int = 0, bias: float = 0.0):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(6, 3, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(
        1, activation="sigmoid", name="p_dog", bias_initializer=keras.initializers.Constant(bias)
    )(x)
    return keras.Model(inputs, outputs, name="scratch_convnet")


def nested_model(size: int = 32, seed: int = 0):
    import keras
    import numpy as np

    keras.utils.set_random_seed(seed)
    backbone_in = keras.Input((size, size, 3))
    y = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="block1_conv1")(
        backbone_in
    )
    y = keras.layers.MaxPooling2D(2, name="block1_pool")(y)
    y = keras.layers.Conv2D(9, 3, padding="same", activation="relu", name="block2_conv1")(y)
    y = keras.layers.MaxPooling2D(2, name="block2_pool")(y)
    backbone = keras.Model(backbone_in, y, name="vgg16")
    inputs = keras.Input((size, size, 3), name="image")
    preprocess = keras.layers.Conv2D(3, 1, trainable=False, name="vgg16_preprocess")
    x = preprocess(inputs)
    preprocess.set_weights([np.eye(3, dtype="float32").reshape(1, 1, 3, 3) / 255.0, np.zeros(3)])
    x = backbone(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="p_dog")(x)
    return keras.Model(inputs, outputs, name="transfer_vgg16")


def save_model_dir(model, folder: Path, history: dict | None = HISTORY) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    model.save(folder / "model.keras")
    if history is not None:
        (folder / "history.json").write_text(json.dumps(history))
    return str(folder)


def write_jpeg(path: Path, size: int = 40, seed: int = 0, exif_rotate: bool = False) -> Path:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (size, size + 8, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    path.parent.mkdir(parents=True, exist_ok=True)
    if exif_rotate:
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees on display
        image.save(path, format="JPEG", exif=exif)
    else:
        image.save(path, format="JPEG")
    return path
