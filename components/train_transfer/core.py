"""Transfer learning from an ImageNet backbone (VGG16 by default), in three modes.

- ``features``: run the frozen backbone once over each split (no augmentation), keep the features
  as an artifact (reused when a rerun asks for the same backbone, weights, image size and data),
  then train only the head on them. The saved model is still the full model: backbone + head.
- ``frozen`` (the seed's recipe, Deep Learning with Python ch. 5): the frozen backbone inside the
  model, trained end to end with the scratch trainer's augmentation.
- ``fine-tune``: ``frozen``, then unfreeze the last block (``block5`` for VGG16) and continue at a
  low learning rate; batch norm layers stay in inference mode (the backbone is always called with
  ``training=False`` and its BatchNormalization layers stay frozen).

Every model: raw RGB pixels [0, 255] -> [augmentation, training only] -> ``<backbone>_preprocess``
(the backbone's ``preprocess_input`` as a frozen 1x1 convolution) -> backbone (nested model named
after it) -> [global average pooling] -> ``head`` (nested model: [Flatten] -> Dense 256 relu ->
Dropout 0.5 -> Dense 1 sigmoid = P(dog)). The saved model.keras leaves the augmentation out (it is
the identity at inference), so loading it needs only Keras.

The run (output claim, resumable fit with per-epoch checkpoints, outputs) is
``catsdogs.components.common.training``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catsdogs.components.common import config, records, storage, training
from catsdogs.components.train_transfer import backbones

KIND = "train_transfer"
MODES = ("features", "frozen", "fine-tune")
FEATURES_FILE = "features.json"
FEATURES_FORMAT = 1
HEAD_UNITS = 256


def _print(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class TransferSettings(training.TrainingSettings):
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

    def __post_init__(self) -> None:
        spec = backbones.backbone_spec(self.backbone)
        if tuple(self.image_size) == (0, 0):
            object.__setattr__(self, "image_size", (spec.image_size, spec.image_size))
        super().__post_init__()
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}.")
        if self.pooling not in ("", *backbones.POOLINGS):
            raise ValueError(
                f"pooling must be one of {', '.join(backbones.POOLINGS)} (or empty for the "
                f"backbone's default), got {self.pooling!r}."
            )
        if min(self.image_size) < 32:
            raise ValueError(
                f"image_size must be at least 32x32 for an ImageNet backbone, got {self.image_size!r}."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
        if not 0 <= self.fine_tune_epochs <= 100_000:
            raise ValueError(
                f"fine_tune_epochs must be between 0 and 100000, got {self.fine_tune_epochs}."
            )
        if self.mode == "fine-tune" and self.fine_tune_epochs < 1:
            raise ValueError("fine_tune_epochs must be at least 1 in fine-tune mode, got 0.")
        if not 0.0 < self.fine_tune_learning_rate <= 10.0:
            raise ValueError(
                "fine_tune_learning_rate must be in (0, 10], got "
                f"{self.fine_tune_learning_rate} (the book uses 1e-5)."
            )
        if not self.weights:
            raise ValueError(
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
    x = training.augmentation_layers(settings.seed)(inputs) if augment else inputs
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
    return training.copy_weights_by_name(trained, plain)


# ------------------------------------------------------------------------------- features


def dataset_fingerprint(manifest: dict[str, Any]) -> str:
    """sha256 of the classes and every shard's checksum: the identity of the images."""
    content = {
        "classes": manifest["classes"],
        "splits": {
            name: [shard["sha256"] for shard in split["shards"]]
            for name, split in sorted(manifest["splits"].items())
        },
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def features_key(
    settings: TransferSettings, weights_fingerprint: str, manifest: dict[str, Any]
) -> dict[str, Any]:
    """Everything the cached features depend on; equal keys mean the features can be reused."""
    import keras

    return {
        "format": FEATURES_FORMAT,
        "backbone": settings.backbone,
        "constructor": settings.spec.constructor,
        "weights": weights_fingerprint,
        "image_size": list(settings.image_size),
        "pooling": settings.resolved_pooling,
        "dtype_policy": keras.mixed_precision.global_policy().name,
        "dataset": dataset_fingerprint(manifest),
        "keras": keras.__version__,
    }


def _key_folder(base: str, key: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return storage.join(base, f"{key['backbone']}-{digest}")


def extract_features(extractor: Any, images: Any) -> tuple[Any, Any]:
    """Run ``extractor`` once over a batched ``(images, labels)`` dataset.

    Returns:
        ``(features float32 [N, ...], labels float32 [N, 1])`` as numpy arrays.
    """
    import numpy as np

    features, labels = [], []
    for x, y in images:  # predict_on_batch: one compiled function, inference mode
        features.append(np.asarray(extractor.predict_on_batch(x), dtype="float32"))
        labels.append(y.numpy())
    return np.concatenate(features), np.concatenate(labels).astype("float32")


def load_features(folder: str, key: dict[str, Any]) -> dict[str, tuple[Any, Any]] | None:
    """The cached features of each split under ``folder`` when their key equals ``key``."""
    import numpy as np

    meta_uri = storage.join(folder, FEATURES_FILE)
    if not storage.exists(meta_uri):
        return None
    try:
        meta = json.loads(storage.read_text(meta_uri))
    except json.JSONDecodeError:
        return None
    if meta.get("key") != key:
        return None
    out = {}
    with tempfile.TemporaryDirectory(prefix="catsdogs-features-") as tmp:
        for split in meta["splits"]:
            local = Path(tmp, f"{split}.npz")
            storage.download_file(storage.join(folder, f"{split}.npz"), local)
            with np.load(local) as arrays:
                out[split] = (arrays["features"], arrays["labels"])
    return out


def save_features(
    folder: str, key: dict[str, Any], splits: dict[str, tuple[Any, Any]], seconds: float
) -> None:
    """Write ``<split>.npz`` (features, labels) per split, then ``features.json`` last."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="catsdogs-features-") as tmp:
        for split, (features, labels) in splits.items():
            local = Path(tmp, f"{split}.npz")
            np.savez(local, features=features, labels=labels)
            storage.upload_file(local, storage.join(folder, f"{split}.npz"))
    meta = {
        "key": key,
        "splits": {
            name: {"count": int(len(f)), "shape": list(f.shape[1:])}
            for name, (f, _) in splits.items()
        },
        "extract_seconds": round(seconds, 3),
    }
    storage.write_text(
        storage.join(folder, FEATURES_FILE), json.dumps(meta, indent=2, sort_keys=True)
    )


def compute_features(
    data: str,
    backbone: Any,
    settings: TransferSettings,
    key: dict[str, Any],
    locations: list[str],
    log: training.Log,
) -> dict[str, tuple[Any, Any]]:
    """Features of every split, from a cache or by running the backbone once per image.

    The first of ``locations`` that holds features with the same ``key`` is used; otherwise the
    backbone runs once over each split. The features are then stored in every other location.
    """
    found, source = None, ""
    for base in locations:
        found = load_features(_key_folder(base, key), key)
        if found is not None:
            source = base
            log(f"Reusing cached {settings.backbone} features from {_key_folder(base, key)}.")
            break
    if found is None:
        extractor = feature_extractor(backbone, settings)
        found, started = {}, time.monotonic()
        manifest = records.load_manifest(data)
        splits = tuple(s for s in records.SPLITS if s in manifest["splits"])
        with records.local_dataset(data, splits) as (folder, local_manifest):
            for split in splits:
                images = training.input_pipeline(
                    folder,
                    local_manifest,
                    split,
                    image_size=settings.image_size,
                    batch_size=settings.batch_size,
                    seed=settings.seed,
                    training=False,
                    cache_limit_bytes=0,
                )
                split_start = time.monotonic()
                found[split] = extract_features(extractor, images)
                log(
                    f"Features of {split}: {found[split][0].shape} in "
                    f"{time.monotonic() - split_start:.1f} s (backbone run once per image)."
                )
        seconds = time.monotonic() - started
    else:
        seconds = 0.0
    for base in locations:
        if base != source:
            save_features(_key_folder(base, key), key, found, seconds)
    return found


def _feature_datasets(
    splits: dict[str, tuple[Any, Any]], settings: TransferSettings
) -> tuple[Any, Any]:
    import tensorflow as tf

    train_x, train_y = splits["train"]
    train = (
        tf.data.Dataset.from_tensor_slices((train_x, train_y))
        .shuffle(len(train_x), seed=settings.seed, reshuffle_each_iteration=True)
        .batch(settings.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    val = tf.data.Dataset.from_tensor_slices(splits["val"]).batch(settings.batch_size)
    return train, val.prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------- the run


def _image_datasets(folder: Path, manifest: dict[str, Any], settings: TransferSettings) -> Any:
    return training.default_datasets(folder, manifest, settings)


def train_transfer(
    data: str,
    output: str,
    settings: TransferSettings | None = None,
    *,
    features: str = "",
    log: training.Log | None = None,
) -> training.TrainingResult:
    """Train a transfer model on a prepared dataset and write a MODEL_DIR to ``output``.

    Rerunning the same command resumes after the last completed epoch (see ``training``); in
    ``features`` mode a rerun with another head reuses the features instead of running the backbone.

    Args:
        data: Prepared dataset folder or gs:// prefix (output of prepare_dataset).
        output: Output folder or gs:// prefix; must be new, empty, or hold this same run.
        settings: The settings (default: VGG16, ImageNet weights, ``features``, 30 epochs).
        features: Folder or gs:// prefix for the features artifact (``features`` mode): features
            found there for the same backbone, weights, size and data are reused, else computed
            and written there (one subfolder per key). Default: the local cache
            (``CATSDOGS_CACHE``). ``settings.checkpoint_dir`` also keeps a copy, so a retried
            pipeline step reuses them.
        log: Where progress lines go (default: stdout).

    Raises:
        records.DatasetError: no manifest, missing split, shard checksum mismatch.
        backbones.WeightsError: ImageNet weights not downloadable (offline), wrong weights file.
        training.RunConflictError: the output or checkpoint folder holds a different run.
        training.GpuRequiredError: ``require_gpu`` without a GPU.
    """
    settings = settings or TransferSettings()
    say: training.Log = log or _print
    training.require_gpu_or_fail(settings.require_gpu)
    manifest = records.load_manifest(data)
    identity = training.run_identity(KIND, settings, manifest)
    if training.output_status(output, identity) == "complete":
        say(f"{output} already holds this finished run; nothing to do.")
        return training.finished_result(output, KIND)
    record = training.run_record(KIND, data, settings, manifest)
    checkpoint = training.checkpoint_location(output, settings)
    device = training.setup_device(settings)
    extra: dict[str, Any] = {"backbone": settings.backbone, "mode": settings.mode}
    try:
        say(
            f"Training {settings.backbone} transfer ({settings.mode}) on {device.describe()}; "
            f"data {data}; output {output}."
        )
        backbone, fingerprint = load_backbone(settings)  # weights problems fail before any write
        training.claim_output(output, identity, record)
        if settings.mode == "features":
            key = features_key(settings, fingerprint, manifest)
            locations = [features or str(config.cache_dir() / "features")]
            if settings.checkpoint_dir:
                locations.append(storage.join(settings.checkpoint_dir, "features"))
            splits = compute_features(data, backbone, settings, key, locations, say)
            train, val = _feature_datasets(splits, settings)
            shape = tuple(splits["train"][0].shape[1:])
            result = training.fit_resumable(
                lambda: _compile(build_head(shape, settings), settings.learning_rate, settings),
                train,
                val,
                settings,
                checkpoint,
                identity,
                log=say,
            )
            history = result.history
            if "test" in splits:
                loss, accuracy = result.model.evaluate(
                    *splits["test"], batch_size=settings.batch_size, verbose=0
                )
                extra.update(
                    test_accuracy_from_features=float(accuracy), test_loss_from_features=float(loss)
                )
            final = build_model(backbone, settings, augment=False, head=result.model)
            extra["features"] = _key_folder(locations[0], key)
            checkpoints = [checkpoint]
        else:
            with records.local_dataset(data, ("train", "val")) as (folder, local_manifest):
                train, val = _image_datasets(folder, local_manifest, settings)
                frozen_dir = (
                    storage.join(checkpoint, "frozen")
                    if settings.mode == "fine-tune"
                    else checkpoint
                )
                result = training.fit_resumable(
                    lambda: build_model(backbone, settings, augment=settings.augment),
                    train,
                    val,
                    settings,
                    frozen_dir,
                    identity,
                    log=say,
                )
                history = result.history
                checkpoints = [frozen_dir]
                if settings.mode == "fine-tune":
                    say(
                        f"Fine-tuning from {settings.unfreeze_from or settings.spec.unfreeze_from}."
                    )
                    phase = dataclasses.replace(settings, epochs=settings.fine_tune_epochs)
                    frozen_model = result.model
                    tuned_dir = storage.join(checkpoint, "fine-tune")
                    tuned = training.fit_resumable(
                        lambda: unfreeze(frozen_model, settings),
                        train,
                        val,
                        phase,
                        tuned_dir,
                        {**identity, "phase": "fine-tune"},
                        log=say,
                    )
                    history = {
                        k: list(result.history.get(k, [])) + list(v)
                        for k, v in tuned.history.items()
                    }
                    extra["fine_tune_from_epoch"] = len(next(iter(result.history.values()), [])) + 1
                    result = dataclasses.replace(
                        tuned,
                        train_seconds=result.train_seconds + tuned.train_seconds,
                        resumed_from=result.resumed_from or tuned.resumed_from,
                    )
                    checkpoints.append(tuned_dir)
            final = inference_model(result.model, settings)
        if not final.optimizer.built:  # saved with its optimizer built: loads without warnings
            final.optimizer.build(final.trainable_variables)
        metrics = training.summarize(
            history,
            epochs_planned=settings.epochs
            + (settings.fine_tune_epochs if settings.mode == "fine-tune" else 0),
            train_seconds=result.train_seconds,
            resumed_from=result.resumed_from,
            stopped_early=result.stopped_early,
            device=device.describe(),
        )
        metrics.update(extra)
        training.write_outputs(
            output, final, history, metrics, title=f"{settings.backbone} {settings.mode}"
        )
        for folder_uri in checkpoints:
            training.delete_checkpoint(folder_uri)
        if checkpoints[0] != checkpoint:
            training.delete_checkpoint(checkpoint)
    finally:
        training.restore_device(device)
    say(
        f"Done: {metrics['epochs_run']} epochs, best val_accuracy "
        f"{metrics.get('best_val_accuracy', float('nan')):.4f}; wrote {output}."
    )
    return training.TrainingResult(
        output, metrics, history, "resumed" if result.resumed_from else "trained", KIND
    )
