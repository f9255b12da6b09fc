"""``catsdogs train-scratch`` and ``catsdogs train-transfer``: the two trainers."""

from __future__ import annotations

import enum
import json
from typing import Annotated

import typer
from catsdogs.components.common import storage
from catsdogs.components.train_scratch.core import ScratchSettings
from catsdogs.components.train_transfer.settings import TransferSettings

app = typer.Typer()
_SCRATCH = ScratchSettings()
_TRANSFER = TransferSettings()
# The declared (0, 0), "the backbone's size"; an instance holds the size it resolved to.
_TRANSFER_IMAGE_SIZE: tuple[int, int] = TransferSettings.__dataclass_fields__["image_size"].default


class MixedPrecisionMode(enum.StrEnum):
    """Mixed precision: auto = float16 only with a GPU; bf16 = bfloat16 (CPUs with bf16 units)."""

    auto = "auto"
    on = "on"
    off = "off"
    bf16 = "bf16"


class Architecture(enum.StrEnum):
    """The model train-scratch builds."""

    seed = "seed"
    xception_mini = "xception-mini"


class Augmentation(enum.StrEnum):
    """The training augmentation: the seed's ImageDataGenerator, or with a real shear."""

    seed = "seed"
    strong = "strong"


class TransferMode(enum.StrEnum):
    """How train-transfer uses the backbone."""

    features = "features"
    frozen = "frozen"
    fine_tune = "fine-tune"


_SCRATCH_PRECISION = MixedPrecisionMode(_SCRATCH.mixed_precision)
_TRANSFER_PRECISION = MixedPrecisionMode(_TRANSFER.mixed_precision)
_TRANSFER_MODE = TransferMode(_TRANSFER.mode)
_ARCHITECTURE = Architecture(_SCRATCH.architecture)
_SCRATCH_AUGMENTATION = Augmentation(_SCRATCH.augmentation)
_TRANSFER_AUGMENTATION = Augmentation(_TRANSFER.augmentation)


# Options shared by both trainers (same names, help and meaning).
DataOption = Annotated[
    str,
    typer.Option(help="Prepared dataset folder or gs:// / s3:// prefix (from `catsdogs prepare`)."),
]
ModelOutputOption = Annotated[
    str, typer.Option(help="Model folder or gs:// / s3:// prefix to write (new, or this same run).")
]
BatchSizeOption = Annotated[int, typer.Option(help="Images per step.")]
SeedOption = Annotated[int, typer.Option(help="Seed for weights, shuffling, augmentation.")]
CheckpointOption = Annotated[
    str,
    typer.Option(
        help="Per-epoch checkpoints (local, gs:// or s3://); default <output>/.checkpoint."
    ),
]
PatienceOption = Annotated[
    int, typer.Option(help="Stop after N epochs without a lower val_loss (0 = off).")
]
MixedPrecisionOption = Annotated[
    MixedPrecisionMode, typer.Option(help="mixed_float16: auto = only on a GPU.")
]
XlaOption = Annotated[bool, typer.Option(help="Compile the training step with XLA.")]
RequireGpuOption = Annotated[bool, typer.Option(help="Fail at once when there is no GPU.")]
AugmentationOption = Annotated[
    Augmentation,
    typer.Option(help="seed: the seed's ImageDataGenerator (shear 0.2 degrees); strong: 11.5."),
]
StepsPerEpochOption = Annotated[
    int, typer.Option(help="Training batches per epoch (the book: 100); 0: one pass.")
]


@app.command("train-scratch")
def train_scratch(
    data: DataOption,
    output: ModelOutputOption,
    architecture: Annotated[
        Architecture,
        typer.Option(help="seed (the seed's convnet) or xception-mini (residual, batch norm)."),
    ] = _ARCHITECTURE,
    epochs: Annotated[int, typer.Option(help="Passes over the training split.")] = _SCRATCH.epochs,
    steps_per_epoch: StepsPerEpochOption = _SCRATCH.steps_per_epoch,
    augmentation: AugmentationOption = _SCRATCH_AUGMENTATION,
    batch_size: BatchSizeOption = _SCRATCH.batch_size,
    learning_rate: Annotated[
        float, typer.Option(help="RMSprop learning rate.")
    ] = _SCRATCH.learning_rate,
    seed: SeedOption = _SCRATCH.seed,
    image_size: Annotated[
        int, typer.Option(help="Square input size in pixels.")
    ] = _SCRATCH.image_size[0],
    checkpoint_dir: CheckpointOption = _SCRATCH.checkpoint_dir,
    early_stopping_patience: PatienceOption = _SCRATCH.early_stopping_patience,
    mixed_precision: MixedPrecisionOption = _SCRATCH_PRECISION,
    xla: XlaOption = _SCRATCH.xla,
    require_gpu: RequireGpuOption = _SCRATCH.require_gpu,
) -> None:
    """Train a convnet from scratch with augmentation; rerun the same command to resume."""
    from catsdogs.components.train_scratch import core

    settings = ScratchSettings(
        architecture=Architecture(architecture).value,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        augmentation=Augmentation(augmentation).value,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        image_size=(image_size, image_size),
        checkpoint_dir=checkpoint_dir,
        early_stopping_patience=early_stopping_patience,
        mixed_precision=MixedPrecisionMode(mixed_precision).value,
        xla=xla,
        require_gpu=require_gpu,
    )
    storage.check_output(output, "--output")
    result = core.train_scratch(data, output, settings)
    typer.echo(json.dumps(result.metrics, sort_keys=True))


@app.command("train-transfer")
def train_transfer(
    data: DataOption,
    output: ModelOutputOption,
    backbone: Annotated[
        str,
        typer.Option(help="vgg16, mobilenet_v2, resnet50 or any keras.applications model."),
    ] = _TRANSFER.backbone,
    weights: Annotated[
        str,
        typer.Option(
            help="imagenet (downloads), or a path / gs:// or s3:// URI of a notop .h5 file."
        ),
    ] = _TRANSFER.weights,
    mode: Annotated[
        TransferMode,
        typer.Option(help="features (backbone run once), frozen (the book), fine-tune."),
    ] = _TRANSFER_MODE,
    epochs: Annotated[
        int, typer.Option(help="Epochs of the head (features) or of the frozen phase.")
    ] = _TRANSFER.epochs,
    batch_size: BatchSizeOption = _TRANSFER.batch_size,
    learning_rate: Annotated[
        float, typer.Option(help="RMSprop learning rate (the book).")
    ] = _TRANSFER.learning_rate,
    fine_tune_epochs: Annotated[
        int, typer.Option(help="Epochs after unfreezing.")
    ] = _TRANSFER.fine_tune_epochs,
    fine_tune_learning_rate: Annotated[
        float, typer.Option(help="RMSprop learning rate after unfreezing.")
    ] = _TRANSFER.fine_tune_learning_rate,
    unfreeze_from: Annotated[
        str,
        typer.Option(help="First layer (name prefix) to unfreeze; default: the last block."),
    ] = _TRANSFER.unfreeze_from,
    image_size: Annotated[
        int, typer.Option(help="Square input size; 0: the backbone's (VGG16 150, others 224).")
    ] = _TRANSFER_IMAGE_SIZE[0],
    pooling: Annotated[
        str, typer.Option(help="flatten or avg before the head; empty: the backbone's.")
    ] = _TRANSFER.pooling,
    augment: Annotated[
        bool, typer.Option(help="The scratch trainer's augmentation (frozen, fine-tune).")
    ] = _TRANSFER.augment,
    augmentation: AugmentationOption = _TRANSFER_AUGMENTATION,
    steps_per_epoch: StepsPerEpochOption = _TRANSFER.steps_per_epoch,
    start_from: Annotated[
        str,
        typer.Option(help="fine-tune: start from this finished features/frozen model folder."),
    ] = _TRANSFER.start_from,
    features: Annotated[
        str,
        typer.Option(
            help="Features cache folder or gs:// / s3:// prefix; default: the local cache."
        ),
    ] = "",
    seed: SeedOption = _TRANSFER.seed,
    checkpoint_dir: CheckpointOption = _TRANSFER.checkpoint_dir,
    early_stopping_patience: PatienceOption = _TRANSFER.early_stopping_patience,
    mixed_precision: MixedPrecisionOption = _TRANSFER_PRECISION,
    xla: XlaOption = _TRANSFER.xla,
    require_gpu: RequireGpuOption = _TRANSFER.require_gpu,
) -> None:
    """Train an ImageNet backbone + new head; rerun the same command to resume."""
    from catsdogs.components.train_transfer import core

    settings = TransferSettings(
        backbone=backbone,
        weights=weights,
        mode=TransferMode(mode).value,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        fine_tune_epochs=fine_tune_epochs,
        fine_tune_learning_rate=fine_tune_learning_rate,
        unfreeze_from=unfreeze_from,
        image_size=(image_size, image_size),
        pooling=pooling,
        augment=augment,
        augmentation=Augmentation(augmentation).value,
        steps_per_epoch=steps_per_epoch,
        start_from=start_from,
        seed=seed,
        checkpoint_dir=checkpoint_dir,
        early_stopping_patience=early_stopping_patience,
        mixed_precision=MixedPrecisionMode(mixed_precision).value,
        xla=xla,
        require_gpu=require_gpu,
    )
    storage.check_output(output, "--output")
    result = core.train_transfer(data, output, settings, features=features)
    typer.echo(json.dumps(result.metrics, sort_keys=True))
