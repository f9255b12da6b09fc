"""Train a convnet from scratch with augmentation: the seed's (default) or a small Xception.

``seed`` (Deep Learning with Python, 1st ed., ch. 5): raw RGB pixels -> Resizing -> Rescaling(1/255)
-> augmentation (training only) -> Conv2D 32/64/128/128 (3x3, relu), each followed by 2x2 max
pooling -> Flatten -> Dropout 0.5 -> Dense 512 relu -> Dense 1 sigmoid = P(dog).

``xception-mini`` (2nd ed., ch. 9.3): raw RGB pixels -> Resizing -> Rescaling(1/255) ->
augmentation -> Conv2D 32 (5x5) -> five residual blocks of 32/64/128/256/512 filters (batch norm,
relu, 3x3 separable convolution, twice; 3x3 max pooling, stride 2; a strided 1x1 convolution on
the shortcut) -> global average pooling -> Dropout 0.5 -> Dense 1 sigmoid. Only built-in layers,
so model.keras loads with plain Keras.

Both: RMSprop, binary cross-entropy. The augmentation lives in the model graph, so it runs on the
GPU when there is one; the saved model.keras leaves it out (it is the identity at inference), so
loading it needs only Keras. The run itself (input pipeline, resumable fit, outputs) is
``catsdogs.components.common.training.run.run_training``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catsdogs.components.common.errors import SettingsError
from catsdogs.components.common.records import Manifest
from catsdogs.components.common.training.augmentation import (
    augmentation_layers,
    copy_weights_by_name,
)
from catsdogs.components.common.training.checkpoint import Log, print_log
from catsdogs.components.common.training.data import default_datasets, input_pipeline
from catsdogs.components.common.training.run import (
    RunContext,
    Trained,
    TrainingResult,
    run_training,
)
from catsdogs.components.common.training.settings import TrainingSettings, check_dropout

KIND = "train_scratch"
ARCHITECTURES = ("seed", "xception-mini")
# Smallest input each architecture accepts (seed: four conv(3x3)+pool(2x2) stages).
MIN_IMAGE_SIZE = {"seed": 46, "xception-mini": 32}
XCEPTION_MINI_FILTERS = (32, 64, 128, 256, 512)


@dataclass(frozen=True)
class ScratchSettings(TrainingSettings):
    """Settings of train_scratch: the shared training settings with the seed's defaults.

    Attributes:
        architecture: ``seed`` (the seed's convnet) or ``xception-mini`` (see the module docstring).
        augment: Apply the augmentation (``augmentation``) during training.
        dropout: Dropout rate before the last dense layer (the seed: 0.5).
    """

    architecture: str = "seed"
    augment: bool = True
    dropout: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.architecture not in ARCHITECTURES:
            raise SettingsError(
                f"architecture must be one of {', '.join(ARCHITECTURES)}, "
                f"got {self.architecture!r}."
            )
        smallest = MIN_IMAGE_SIZE[self.architecture]
        if min(self.image_size) < smallest:
            raise SettingsError(
                f"image_size must be at least {smallest}x{smallest} for the "
                f"{self.architecture} model, got {self.image_size!r}."
            )
        check_dropout(self.dropout)


def build_model(settings: ScratchSettings | None = None) -> Any:
    """The ``settings.architecture`` convnet, compiled; takes raw RGB pixels of ``image_size``.

    The augmentation is part of the model, except with ``xla`` (its image-transform op has no XLA
    kernel): then ``datasets`` applies it in the input pipeline instead.
    """
    import keras

    settings = settings or ScratchSettings()
    height, width = settings.image_size
    inputs = keras.Input(shape=(height, width, 3), name="image")
    # training=False: Keras 3's Resizing would otherwise put the layers after it (batch norm) in
    # training mode when the model is called without ``training``.
    x = keras.layers.Resizing(height, width, name="resize")(inputs, training=False)
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(x)
    if settings.augment and not settings.xla:
        x = augmentation_layers(settings.seed, kind=settings.augmentation)(x)
    if settings.architecture == "xception-mini":
        outputs = xception_mini(x, settings)
    else:
        outputs = seed_convnet(x, settings)
    name = "scratch_convnet" if settings.architecture == "seed" else "xception_mini"
    model = keras.Model(inputs, outputs, name=name)
    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=settings.learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        jit_compile=settings.xla,
    )
    return model


def seed_convnet(x: Any, settings: ScratchSettings) -> Any:
    """The seed's layers from rescaled pixels to P(dog)."""
    import keras

    for index, filters in enumerate((32, 64, 128, 128), start=1):
        x = keras.layers.Conv2D(filters, 3, activation="relu", name=f"conv{index}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{index}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(settings.dropout, seed=settings.seed, name="dropout")(x)
    x = keras.layers.Dense(512, activation="relu", name="dense")(x)
    return keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="p_dog")(x)


def xception_mini(x: Any, settings: ScratchSettings) -> Any:
    """The book's small Xception-like layers from rescaled pixels to P(dog)."""
    import keras

    layers = keras.layers
    x = layers.Conv2D(32, 5, use_bias=False, name="stem")(x)
    for block, filters in enumerate(XCEPTION_MINI_FILTERS, start=1):
        residual = x
        for index in (1, 2):
            x = layers.BatchNormalization(name=f"block{block}_bn{index}")(x)
            x = layers.Activation("relu", name=f"block{block}_relu{index}")(x)
            x = layers.SeparableConv2D(
                filters, 3, padding="same", use_bias=False, name=f"block{block}_sepconv{index}"
            )(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"block{block}_pool")(x)
        residual = layers.Conv2D(
            filters, 1, strides=2, padding="same", use_bias=False, name=f"block{block}_shortcut"
        )(residual)
        x = layers.Add(name=f"block{block}_add")([x, residual])
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(settings.dropout, seed=settings.seed, name="dropout")(x)
    return layers.Dense(1, activation="sigmoid", dtype="float32", name="p_dog")(x)


def datasets(folder: Path, manifest: Manifest, settings: ScratchSettings) -> tuple[Any, Any]:
    """``(train, val)`` batches; the training batches are augmented here only with ``xla``."""
    if not (settings.augment and settings.xla):
        return default_datasets(folder, manifest, settings)
    size, batch, seed = settings.image_size, settings.batch_size, settings.seed
    train = input_pipeline(
        folder,
        manifest,
        "train",
        image_size=size,
        batch_size=batch,
        seed=seed,
        training=True,
        augmentation=augmentation_layers(seed, kind=settings.augmentation),
    )
    val = input_pipeline(
        folder, manifest, "val", image_size=size, batch_size=batch, seed=seed, training=False
    )
    return train, val


def inference_model(trained: Any, settings: ScratchSettings) -> Any:
    """The trained model without its augmentation layers (what model.keras holds).

    The augmentation is the identity at inference, so predictions are unchanged; leaving it out
    means loading model.keras needs nothing but Keras.
    """
    plain = build_model(dataclasses.replace(settings, augment=False))
    return copy_weights_by_name(trained, plain)


def fit(context: RunContext, settings: ScratchSettings) -> Trained:
    """The training of ``run_training``: the convnet on the train and val splits."""
    with context.train_and_val() as (folder, manifest):
        train, val = datasets(folder, manifest, settings)
        result = context.fit(lambda: build_model(settings), train, val)
    return Trained(inference_model(result.model, settings), result, settings.epochs)


def train_scratch(
    data: str,
    output: str,
    settings: ScratchSettings | None = None,
    *,
    log: Log = print_log,
) -> TrainingResult:
    """Train a convnet from scratch on a prepared dataset and write a MODEL_DIR to ``output``.

    Rerunning the same command resumes after the last completed epoch (see ``run_training``).

    Args:
        data: Prepared dataset folder or gs:// / s3:// prefix (output of prepare_dataset).
        output: Output folder or gs:// / s3:// prefix; must be new, empty, or hold this same run.
        settings: Training settings (default: ``ScratchSettings()``, the seed's).
        log: Where progress lines go (default: stdout).
    """
    settings = settings or ScratchSettings()
    return run_training(
        kind=KIND,
        data=data,
        output=output,
        settings=settings,
        fit=lambda context: fit(context, settings),
        log=log,
    )
