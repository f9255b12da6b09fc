"""The transfer trainer's settings: backbone, weights, mode and the head's recipe.

Kept apart from ``core`` (which builds and trains the models) so that the CLI and the pipeline
read these defaults without loading the training code.
"""

from __future__ import annotations

from dataclasses import dataclass

from catsdogs.components.common.errors import SettingsError
from catsdogs.components.common.training.settings import (
    TrainingSettings,
    check_dropout,
    check_epochs,
    check_learning_rate,
)
from catsdogs.components.train_transfer import backbones

MODES = ("features", "frozen", "fine-tune")
# Smallest input an ImageNet backbone accepts.
MIN_IMAGE_SIZE = 32


@dataclass(frozen=True)
class TransferSettings(TrainingSettings):
    """Settings of train_transfer: the shared training settings plus the backbone and mode.

    Attributes:
        backbone: ``vgg16``, ``mobilenet_v2``, ``resnet50`` or another keras.applications model in
            snake case (``efficientnet_b0``...).
        weights: ``imagenet`` (Keras downloads them), a local path or gs:// URI of a notop ``.h5``
            weights file, or ``none`` (random; for tests).
        mode: ``features``, ``frozen`` or ``fine-tune`` (see the module docstring).
        epochs: Epochs of the head (``features``) or of the frozen phase (``frozen``, ``fine-tune``).
        learning_rate: RMSprop learning rate of those epochs (the book: 2e-5).
        image_size: Input size; ``(0, 0)`` picks the backbone's (VGG16 150, others 224).
        pooling: ``flatten`` or ``avg`` between backbone and head; ``""`` picks the backbone's
            (VGG16 flatten as the book, others avg).
        dropout: Dropout rate in the head (the book: 0.5).
        augment: Apply the scratch trainer's augmentation in ``frozen`` and ``fine-tune``.
        fine_tune_epochs: Epochs after unfreezing (``fine-tune`` only).
        fine_tune_learning_rate: RMSprop learning rate after unfreezing (the book: 1e-5).
        unfreeze_from: Name prefix of the first backbone layer to unfreeze; ``""`` picks the
            backbone's last block (VGG16 ``block5``, MobileNetV2 ``block_16``, ResNet50
            ``conv5_block3``); required for other backbones.
        start_from: ``fine-tune`` only: a MODEL_DIR (local, gs:// or s3://) of a finished ``features``
            or ``frozen`` run of the same backbone, image size and pooling; fine-tuning starts
            from its trained head instead of running the frozen phase again. ``""``: train the
            frozen phase first.
    """

    backbone: str = "vgg16"
    weights: str = backbones.IMAGENET
    mode: str = "features"
    epochs: int = 30
    learning_rate: float = 2e-5
    image_size: tuple[int, int] = (0, 0)
    pooling: str = ""
    dropout: float = 0.5
    augment: bool = True
    fine_tune_epochs: int = 10
    fine_tune_learning_rate: float = 1e-5
    unfreeze_from: str = ""
    start_from: str = ""

    def __post_init__(self) -> None:
        spec = backbones.backbone_spec(self.backbone)
        if tuple(self.image_size) == (0, 0):
            object.__setattr__(self, "image_size", (spec.image_size, spec.image_size))
        super().__post_init__()
        if self.mode not in MODES:
            raise SettingsError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}.")
        if self.pooling not in ("", *backbones.POOLINGS):
            raise SettingsError(
                f"pooling must be one of {', '.join(backbones.POOLINGS)} (or empty for the "
                f"backbone's default), got {self.pooling!r}."
            )
        if min(self.image_size) < MIN_IMAGE_SIZE:
            raise SettingsError(
                f"image_size must be at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE} for an ImageNet "
                f"backbone, got {self.image_size!r}."
            )
        check_dropout(self.dropout)
        check_epochs("fine_tune_epochs", self.fine_tune_epochs, minimum=0)
        if self.mode == "fine-tune" and self.fine_tune_epochs < 1:
            raise SettingsError("fine_tune_epochs must be at least 1 in fine-tune mode, got 0.")
        check_learning_rate("fine_tune_learning_rate", self.fine_tune_learning_rate)
        if self.start_from and self.mode != "fine-tune":
            raise SettingsError(
                f"start_from is for fine-tune mode only (mode is {self.mode!r}): drop "
                "--start-from, or pass --mode fine-tune."
            )
        if not self.weights:
            raise SettingsError(
                "weights must be 'imagenet', 'none' or a path / gs:// or s3:// URI of a notop .h5 file, "
                "got ''."
            )

    @property
    def spec(self) -> backbones.BackboneSpec:
        """The backbone's spec."""
        return backbones.backbone_spec(self.backbone)

    @property
    def resolved_pooling(self) -> str:
        """``pooling`` or the backbone's default."""
        return self.pooling or self.spec.pooling
