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
from catsdogs.components.train_transfer import backbones
from catsdogs.components.train_transfer.features import (
    compute_features,
    feature_datasets,
    features_key,
    key_folder,
)
from catsdogs.components.train_transfer.settings import TransferSettings

KIND = "train_transfer"
HEAD_UNITS = 256  # units of the head's dense layer (the seed's recipe)


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
        context.dataset,
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
        data: Prepared dataset folder or gs:// / s3:// prefix (output of prepare_dataset).
        output: Output folder or gs:// / s3:// prefix; must be new, empty, or hold this same run.
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
