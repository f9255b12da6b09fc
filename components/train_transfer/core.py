"""Transfer learning from an ImageNet backbone (VGG16 by default), in three modes.

- ``features``: run the frozen backbone once over each split (no augmentation), keep the features
  as an artifact (reused when a rerun asks for the same backbone, weights, image size and data),
  then train only the head on them. The saved model is still the full model: backbone + head.
- ``frozen`` (the seed's recipe, Deep Learning with Python ch. 5): the frozen backbone inside the
  model, trained end to end with the scratch trainer's augmentation.
- ``fine-tune``: ``frozen`` (or, with ``start_from``, a finished ``features``/``frozen`` model,
  so that phase is not run again), then unfreeze the last block (``block5`` for VGG16) and
  continue at a low learning rate; batch norm layers stay in inference mode (the backbone is
  always called with ``training=False`` and its BatchNormalization layers stay frozen). No
  learning-rate warm-up: the head is trained before the block is unfrozen, so the first
  fine-tuning steps see no large gradients of a random head, which is what a warm-up guards
  against.

Every model: raw RGB pixels [0, 255] -> [augmentation, training only] -> ``<backbone>_preprocess``
(the backbone's ``preprocess_input`` as a frozen 1x1 convolution) -> backbone (nested model named
after it) -> [global average pooling] -> ``head`` (nested model: [Flatten] -> Dense 256 relu ->
Dropout 0.5 -> Dense 1 sigmoid = P(dog)). The saved model.keras leaves the augmentation out (it is
the identity at inference), so loading it needs only Keras.

The run (output claim, resumable fit with per-epoch checkpoints, outputs) is
``catsdogs.components.common.training.run.run_training``; ``fit`` here holds only the three modes.
The features cache is ``features``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from catsdogs.components.common import config, model_dir, storage
from catsdogs.components.common.errors import SettingsError
from catsdogs.components.common.training.augmentation import (
    augmentation_layers,
    copy_weights_by_name,
)
from catsdogs.components.common.training.checkpoint import FitResult, Log, print_log
from catsdogs.components.common.training.data import default_datasets
from catsdogs.components.common.training.run import (
    RunContext,
    Trained,
    TrainingResult,
    run_training,
)
from catsdogs.components.common.training.settings import (
    TrainingSettings,
    check_dropout,
    check_epochs,
    check_learning_rate,
)
from catsdogs.components.train_transfer import backbones
from catsdogs.components.train_transfer.features import (
    compute_features,
    feature_datasets,
    features_key,
    key_folder,
)

KIND = "train_transfer"
MODES = ("features", "frozen", "fine-tune")
HEAD_UNITS = 256
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
        start_from: ``fine-tune`` only: a MODEL_DIR (local or gs://) of a finished ``features``
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
                "weights must be 'imagenet', 'none' or a path / gs:// URI of a notop .h5 file, "
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


# ------------------------------------------------------------------------------- models


def build_head(feature_shape: tuple[int, ...], settings: TransferSettings) -> Any:
    """The classifier on top of the backbone, a nested model named ``head``.

    [Flatten] -> Dense 256 relu -> Dropout -> Dense 1 sigmoid (float32 under mixed precision).
    """
    import keras

    inputs = keras.Input(shape=feature_shape, name="features")
    x = inputs
    if len(feature_shape) > 1:
        x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(HEAD_UNITS, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(settings.dropout, seed=settings.seed, name="dropout")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="p_dog")(x)
    return keras.Model(inputs, outputs, name="head")


def _compile(model: Any, learning_rate: float, settings: TransferSettings) -> Any:
    import keras

    model.compile(
        optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy"],
        jit_compile=settings.xla,
    )
    return model


def feature_extractor(backbone: Any, settings: TransferSettings) -> Any:
    """Raw pixels -> preprocess -> backbone (inference mode) -> [average pooling]."""
    import keras

    height, width = settings.image_size
    inputs = keras.Input(shape=(height, width, 3), name="image")
    return keras.Model(inputs, _backbone_part(inputs, backbone, settings), name="extractor")


def _backbone_part(x: Any, backbone: Any, settings: TransferSettings) -> Any:
    import keras

    preprocess = backbones.preprocess_layer(settings.spec)
    if preprocess is not None:
        x = preprocess(x)
    x = backbone(x, training=False)  # batch norm stays in inference mode, also when fine-tuning
    if settings.resolved_pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return x


def build_model(
    backbone: Any, settings: TransferSettings, *, augment: bool, head: Any = None
) -> Any:
    """The full model on raw RGB pixels: [augmentation] -> preprocess -> backbone -> head.

    Args:
        backbone: From ``backbones.build_backbone`` (frozen here; see ``unfreeze``).
        settings: The run's settings.
        augment: Put the scratch trainer's augmentation first (training-time only layers).
        head: A trained head to reuse; default: a new one.

    Returns:
        The model, compiled with RMSprop at ``settings.learning_rate``.
    """
    import keras

    height, width = settings.image_size
    backbones.set_trainable(backbone, None)
    inputs = keras.Input(shape=(height, width, 3), name="image")
    x = (
        augmentation_layers(settings.seed, kind=settings.augmentation)(inputs)
        if augment
        else inputs
    )
    x = _backbone_part(x, backbone, settings)
    if head is None:
        head = build_head(tuple(x.shape[1:]), settings)
    outputs = head(x)
    model = keras.Model(inputs, outputs, name=f"{settings.backbone}_transfer")
    return _compile(model, settings.learning_rate, settings)


def unfreeze(model: Any, settings: TransferSettings) -> Any:
    """Unfreeze the backbone's last block in ``model`` and recompile at the fine-tune rate."""
    backbone = model.get_layer(settings.backbone)
    first = backbones.unfreeze_index(backbone, settings.spec, settings.unfreeze_from)
    backbones.set_trainable(backbone, first)
    return _compile(model, settings.fine_tune_learning_rate, settings)


def load_backbone(settings: TransferSettings, *, random: bool = False) -> tuple[Any, str]:
    """The backbone with its weights (random when ``random``), and the weights' fingerprint."""
    spec = settings.spec
    weights, fingerprint = backbones.fetch_weights(
        backbones.RANDOM if random else settings.weights, spec
    )
    return backbones.build_backbone(spec, weights, settings.image_size[0]), fingerprint


def inference_model(trained: Any, settings: TransferSettings) -> Any:
    """The trained model without its augmentation layers (what model.keras holds).

    The fine-tuned block stays marked trainable, so the saved model shows what was tuned.
    """
    if not any(layer.name == "augmentation" for layer in trained.layers):
        return trained
    backbone, _ = load_backbone(settings, random=True)
    plain = build_model(backbone, settings, augment=False)
    if settings.mode == "fine-tune":
        plain = unfreeze(plain, settings)
    return copy_weights_by_name(trained, plain)


# ------------------------------------------------------------------------------- the run


def fit(context: RunContext, settings: TransferSettings, features: str) -> Trained:
    """The training of ``run_training`` in ``settings.mode`` (see the module docstring)."""
    backbone, fingerprint = load_backbone(settings)  # weights problems fail before any write
    if settings.mode == "features":
        return _fit_head_on_features(context, settings, backbone, fingerprint, features)
    return _fit_on_images(context, settings, backbone)


def _fit_head_on_features(
    context: RunContext,
    settings: TransferSettings,
    backbone: Any,
    fingerprint: str,
    features: str,
) -> Trained:
    """``features``: the backbone once per image (or the cache), then the head on the features."""
    context.claim()
    key = features_key(settings, fingerprint, context.manifest)
    locations = [features or str(config.cache_dir() / "features")]
    if settings.checkpoint_dir:
        locations.append(storage.join(settings.checkpoint_dir, "features"))
    splits = compute_features(
        context.data,
        lambda: feature_extractor(backbone, settings),
        settings,
        key,
        locations,
        context.log,
    )
    train, val = feature_datasets(splits, settings)
    shape = tuple(splits["train"][0].shape[1:])
    result = context.fit(
        lambda: _compile(build_head(shape, settings), settings.learning_rate, settings),
        train,
        val,
    )
    extra: dict[str, Any] = {"backbone": settings.backbone, "mode": settings.mode}
    if "test" in splits:
        loss, accuracy = result.model.evaluate(
            *splits["test"], batch_size=settings.batch_size, verbose=0
        )
        extra.update(
            test_accuracy_from_features=float(accuracy), test_loss_from_features=float(loss)
        )
    extra["features"] = key_folder(locations[0], key)
    final = build_model(backbone, settings, augment=False, head=result.model)
    return Trained(final, result, settings.epochs, extra)


def _fit_on_images(context: RunContext, settings: TransferSettings, backbone: Any) -> Trained:
    """``frozen``: the whole model on (augmented) images; ``fine-tune``: then the last block too."""
    extra: dict[str, Any] = {"backbone": settings.backbone, "mode": settings.mode}
    phase = "frozen" if settings.mode == "fine-tune" else ""
    start = start_model(settings, backbone) if settings.start_from else None
    with context.train_and_val() as (folder, manifest):
        train, val = default_datasets(folder, manifest, settings)
        if start is None:
            result = context.fit(
                lambda: build_model(backbone, settings, augment=settings.augment),
                train,
                val,
                phase=phase,
            )
            epochs = settings.epochs
        else:
            context.log(f"Starting from the finished model in {settings.start_from}.")
            result, epochs = start, len(next(iter(start.history.values()), []))
            extra["start_from"] = settings.start_from
        if settings.mode == "fine-tune":
            context.log(
                f"Fine-tuning from {settings.unfreeze_from or settings.spec.unfreeze_from}."
            )
            frozen = result
            tuned = context.fit(
                lambda: unfreeze(frozen.model, settings),
                train,
                val,
                phase="fine-tune",
                settings=dataclasses.replace(settings, epochs=settings.fine_tune_epochs),
            )
            history = {k: frozen.history.get(k, []) + v for k, v in tuned.history.items()}
            extra["fine_tune_from_epoch"] = len(next(iter(frozen.history.values()), [])) + 1
            result = dataclasses.replace(
                tuned,
                history=history,
                train_seconds=frozen.train_seconds + tuned.train_seconds,
                resumed_from=frozen.resumed_from or tuned.resumed_from,
            )
            epochs += settings.fine_tune_epochs
    return Trained(inference_model(result.model, settings), result, epochs, extra)


def start_model(settings: TransferSettings, backbone: Any) -> FitResult:
    """``start_from``'s finished model as the result of the frozen phase (which is not rerun).

    The model is rebuilt (with the augmentation, for training) and takes the weights of every
    layer of the finished one; its history.json, when there, starts the run's history.

    Raises:
        ModelError: ``start_from`` holds no loadable model.keras.
        SettingsError: That model is not a transfer model of this backbone and shape.
    """
    start = model_dir.load_model(settings.start_from)
    model = build_model(backbone, settings, augment=settings.augment)
    try:
        for layer in model.layers:
            if layer.name != "augmentation":
                layer.set_weights(start.get_layer(layer.name).get_weights())
    except ValueError as error:
        raise SettingsError(
            f"--start-from {settings.start_from}: its model.keras is not a {settings.backbone} "
            f"transfer model of image size {settings.image_size} and pooling "
            f"{settings.resolved_pooling} ({str(error).splitlines()[0]}). Pass the output of a "
            "features or frozen run with the same backbone, image size and pooling."
        ) from error
    history_uri = storage.join(settings.start_from, model_dir.HISTORY_FILE)
    history = json.loads(storage.read_text(history_uri)) if storage.exists(history_uri) else {}
    return FitResult(model, history, 0, 0.0, False)


def check_unfreeze_from(settings: TransferSettings) -> None:
    """Fine-tuning: check before any work that ``unfreeze_from`` names a layer of the backbone.

    The backbone is built without weights for that, unless its own last block is used.

    Raises:
        SettingsError: No layer name starts with the prefix, or the backbone has no default.
    """
    if settings.mode != "fine-tune" or (settings.spec.unfreeze_from and not settings.unfreeze_from):
        return
    backbone, _ = load_backbone(settings, random=True)
    backbones.unfreeze_index(backbone, settings.spec, settings.unfreeze_from)


def train_transfer(
    data: str,
    output: str,
    settings: TransferSettings | None = None,
    *,
    features: str = "",
    log: Log = print_log,
) -> TrainingResult:
    """Train a transfer model on a prepared dataset and write a MODEL_DIR to ``output``.

    Rerunning the same command resumes after the last completed epoch (see ``run_training``); in
    ``features`` mode a rerun with another head reuses the features instead of running the backbone.

    Args:
        data: Prepared dataset folder or gs:// prefix (output of prepare_dataset).
        output: Output folder or gs:// prefix; must be new, empty, or hold this same run.
        settings: The settings (default: ``TransferSettings()``).
        features: Folder or gs:// prefix for the features artifact (``features`` mode): features
            found there for the same backbone, weights, size and data are reused, else computed
            and written there (one subfolder per key). Default: the local cache
            (``CATSDOGS_CACHE``). ``settings.checkpoint_dir`` also keeps a copy, so a retried
            pipeline step reuses them.
        log: Where progress lines go (default: stdout).

    Raises:
        DatasetError: no manifest, missing split, shard checksum mismatch.
        backbones.WeightsError: ImageNet weights not downloadable (offline), wrong weights file.
        OutputConflictError: the output or checkpoint folder holds a different run, or
            ``features`` is a file.
        SettingsError: ``settings.unfreeze_from`` names no backbone layer (checked first).
        GpuRequiredError: ``require_gpu`` without a GPU.
    """
    settings = settings or TransferSettings()
    check_unfreeze_from(settings)
    if features:
        storage.check_folder(features, "--features")
    return run_training(
        kind=KIND,
        data=data,
        output=output,
        settings=settings,
        fit=lambda context: fit(context, settings, features),
        title=f"{settings.backbone} transfer ({settings.mode})",
        log=log,
    )
