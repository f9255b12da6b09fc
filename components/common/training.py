"""Training infrastructure shared by the trainers (train_scratch, train_transfer).

What is here, in the order a trainer uses it:

- ``TrainingSettings``: the frozen settings every trainer has (subclass it to add fields or change
  defaults; call ``super().__post_init__()``), and ``run_identity`` (what makes two runs "the same").
- ``setup_device``: ``require_gpu`` check, seeds, mixed-precision policy (``restore_device`` undoes
  the policy). ``require_gpu_or_fail`` on its own for trainers that need only that.
- ``input_pipeline``: tf.data over a prepared split: parallel decode, cache when it fits in
  memory, seeded shuffle, batch, optional augmentation map, prefetch.
- ``augmentation_layers``: the seed's ImageDataGenerator augmentation as Keras preprocessing layers.
- ``run_training``: the whole resumable run (output claim, data, fit with a checkpoint every epoch,
  outputs) for a trainer that supplies a model builder; built from the lower-level pieces
  ``claim_output``, ``fit_resumable`` and ``write_outputs``, which a trainer may also use directly.

Output folder (local or gs://), the MODEL_DIR contract:

    run.json        written first (create-only): the settings and data identity of the run
    history.json    {"loss": [...], "accuracy": [...], "val_loss": [...], "val_accuracy": [...]}
    metrics.json    final and best validation figures, epochs run, training time
    curves.png      training vs validation accuracy and loss, as the seed plots them
    model.keras     written last: a folder with it holds a finished run

Checkpoint folder (default ``<output>/.checkpoint``; local or gs://): ``state.json`` (epochs done,
history, training seconds, the run identity, the current model file) and ``model-epoch-NNNNN.keras``
(model + optimizer state). A rerun of the same command resumes after the last completed epoch; the
checkpoint is deleted once the outputs are written.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import html
import io
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catsdogs.components.common import records, storage

RUN_FILE = "run.json"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.png"
MODEL_FILE = "model.keras"
STATE_FILE = "state.json"
CHECKPOINT_SUBDIR = ".checkpoint"
MIXED_PRECISION_CHOICES = ("auto", "on", "off")
# Decoded images are cached in memory when they take at most this much (uint8 pixels).
DEFAULT_CACHE_LIMIT_BYTES = 4 << 30
# Settings that do not change what a run computes: a rerun may change them freely.
NON_IDENTITY_FIELDS = frozenset({"checkpoint_dir", "require_gpu"})

Log = Callable[[str], None]


def _print(message: str) -> None:
    print(message, flush=True)


class GpuRequiredError(ValueError):
    """``require_gpu`` was set but TensorFlow sees no GPU (a ValueError: the CLI reports it)."""


class RunConflictError(FileExistsError):
    """An output or checkpoint location already holds a different run."""


# ------------------------------------------------------------------------------ settings


@dataclass(frozen=True)
class TrainingSettings:
    """Settings every trainer has. Subclasses add fields and may override defaults.

    Attributes:
        epochs: Number of passes over the training split (the seed's figure: 100).
        batch_size: Images per step.
        learning_rate: Optimizer learning rate.
        seed: Seed for weights, shuffling and augmentation (keras.utils.set_random_seed).
        image_size: ``(height, width)`` the images are decoded/resized to and the model takes.
        early_stopping_patience: Stop after this many epochs without a lower val_loss (0 = off).
        mixed_precision: ``"auto"`` (mixed_float16 only when a GPU is present), ``"on"``, ``"off"``.
        xla: Compile the training step with XLA (``jit_compile``).
        checkpoint_dir: Where per-epoch checkpoints go (local or gs://); ``""`` means
            ``<output>/.checkpoint``. Use a stable location on preemptible nodes.
        require_gpu: Fail at once when TensorFlow sees no GPU.
    """

    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-4
    seed: int = 1337
    image_size: tuple[int, int] = (150, 150)
    early_stopping_patience: int = 0
    mixed_precision: str = "auto"
    xla: bool = False
    checkpoint_dir: str = ""
    require_gpu: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.epochs <= 100_000:
            raise ValueError(f"epochs must be between 1 and 100000, got {self.epochs}.")
        if not 1 <= self.batch_size <= 65_536:
            raise ValueError(f"batch_size must be between 1 and 65536, got {self.batch_size}.")
        if not 0.0 < self.learning_rate <= 10.0:
            raise ValueError(
                f"learning_rate must be in (0, 10], got {self.learning_rate} (the seed uses 1e-4)."
            )
        if not 0 <= self.seed < 2**31:
            raise ValueError(f"seed must be between 0 and 2**31-1, got {self.seed}.")
        size = tuple(self.image_size)
        if len(size) != 2 or not all(isinstance(v, int) and 16 <= v <= 4096 for v in size):
            raise ValueError(
                f"image_size must be (height, width) with each between 16 and 4096, "
                f"got {self.image_size!r}."
            )
        object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))
        if not 0 <= self.early_stopping_patience <= 100_000:
            raise ValueError(
                "early_stopping_patience must be 0 (off) or a positive number of epochs, "
                f"got {self.early_stopping_patience}."
            )
        if self.mixed_precision not in MIXED_PRECISION_CHOICES:
            raise ValueError(
                f"mixed_precision must be one of {', '.join(MIXED_PRECISION_CHOICES)}, "
                f"got {self.mixed_precision!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready values (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["image_size"] = list(self.image_size)
        return out


def run_identity(kind: str, settings: TrainingSettings, manifest: dict[str, Any]) -> dict[str, Any]:
    """What makes two runs the same run: trainer kind, settings that change results, data content.

    ``checkpoint_dir`` and ``require_gpu`` are left out (they do not change what is computed); the
    data is identified by a hash of its manifest (which holds every shard's sha256), not its path.
    """
    values = {k: v for k, v in settings.to_dict().items() if k not in NON_IDENTITY_FIELDS}
    manifest_hash = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()
    return {"kind": kind, "settings": values, "data_manifest_sha256": manifest_hash}


def _describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    diffs = []
    if old.get("kind") != new.get("kind"):
        diffs.append(f"kind={old.get('kind')!r} there, {new.get('kind')!r} asked")
    old_s, new_s = old.get("settings", {}), new.get("settings", {})
    for key in sorted(set(old_s) | set(new_s)):
        if old_s.get(key) != new_s.get(key):
            diffs.append(f"{key}={old_s.get(key)!r} there, {new_s.get(key)!r} asked")
    if old.get("data_manifest_sha256") != new.get("data_manifest_sha256"):
        diffs.append("a different dataset")
    return ", ".join(diffs) or "different content"


# ------------------------------------------------------------------------------ device


def gpu_available() -> bool:
    """Whether TensorFlow sees at least one GPU."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def require_gpu_or_fail(required: bool) -> None:
    """Raise GpuRequiredError when ``required`` and TensorFlow sees no GPU."""
    if required and not gpu_available():
        raise GpuRequiredError(
            "require_gpu is set but TensorFlow sees no GPU on this machine. Run on a GPU node "
            "(check the node's nvidia driver and the CUDA libraries of the image), or drop "
            "--require-gpu / set require_gpu=False to train on the CPU."
        )


@dataclass(frozen=True)
class DeviceInfo:
    """What ``setup_device`` found and chose."""

    gpus: int
    mixed_precision: bool
    previous_policy: str = field(repr=False, default="float32")

    def describe(self) -> str:
        """One line for logs and metrics, e.g. ``1 GPU, mixed_float16``."""
        where = f"{self.gpus} GPU" if self.gpus else f"CPU ({platform.machine()})"
        return f"{where}, {'mixed_float16' if self.mixed_precision else 'float32'}"


def setup_device(settings: TrainingSettings) -> DeviceInfo:
    """Check ``require_gpu``, seed Python/NumPy/TF and set the Keras dtype policy.

    Call before building the model (the policy applies to layers created afterwards) and call
    ``restore_device`` when done.
    """
    import keras
    import tensorflow as tf

    require_gpu_or_fail(settings.require_gpu)
    gpus = len(tf.config.list_physical_devices("GPU"))
    mixed = settings.mixed_precision == "on" or (settings.mixed_precision == "auto" and gpus > 0)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    keras.utils.set_random_seed(settings.seed)
    return DeviceInfo(gpus=gpus, mixed_precision=mixed, previous_policy=previous)


def restore_device(info: DeviceInfo) -> None:
    """Put back the Keras dtype policy that was in force before ``setup_device``."""
    import keras

    keras.mixed_precision.set_global_policy(info.previous_policy)


# ------------------------------------------------------------------------------ data


def augmentation_layers(seed: int = 1337, name: str = "augmentation", *, fused: bool = True) -> Any:
    """The seed's ImageDataGenerator augmentation as one Keras layer (active only in training).

    Same strengths as ``ImageDataGenerator(rotation_range=40, width_shift_range=0.2,
    height_shift_range=0.2, shear_range=0.2, zoom_range=0.2, horizontal_flip=True,
    fill_mode='nearest')``: rotation up to 40 degrees either way, shifts up to 20% of the width and
    height, shear along x up to 0.2 either way (ImageDataGenerator reads 0.2 as degrees, which is
    hardly visible; we use the strength its docs suggest), zoom in or out up to 20% along each
    axis independently, random horizontal flip, nearest fill. Works on float or uint8 batches
    ``[N, H, W, 3]`` (also inside a tf.data map); with ``training=False`` it is the identity.

    Args:
        seed: Seed of the random transforms.
        name: Name of the returned layer.
        fused: One ``RandomAffine`` layer composing all five transforms into a single resampling
            per image (as ImageDataGenerator does; about 4x faster), or, when False, the chain of
            Keras layers RandomRotation, RandomTranslation, RandomShear, RandomZoom, RandomFlip
            (one resampling each).
    """
    import keras

    fill = "nearest"
    if fused:
        affine = random_affine_class()
        return keras.Sequential([affine(seed=seed, name="random_affine")], name=name)
    shear = random_shear_class()
    return keras.Sequential(
        [
            keras.layers.RandomRotation(40 / 360, fill_mode=fill, seed=seed),
            keras.layers.RandomTranslation(0.2, 0.2, fill_mode=fill, seed=seed + 1),
            shear(0.2, fill_mode=fill, seed=seed + 2),
            keras.layers.RandomZoom(0.2, 0.2, fill_mode=fill, seed=seed + 3),
            keras.layers.RandomFlip("horizontal", seed=seed + 4),
        ],
        name=name,
    )


@functools.cache
def random_affine_class() -> Any:
    """The ``RandomAffine`` layer class (registered as ``catsdogs>RandomAffine``).

    Defined on first use so importing this module stays light; ``fit_resumable`` calls it before
    loading a checkpoint.
    """
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="catsdogs")
    class RandomAffine(keras.layers.Layer):  # type: ignore[misc]
        """Random rotation, shift, shear, zoom and horizontal flip in one bilinear resampling.

        Per image: the output-to-input pixel map ``centre + shift + R(angle) Sh(shear) Z(zx, zy)
        F (p - centre)``, as ImageDataGenerator.apply_affine_transform composes it; points outside
        the image take the nearest edge pixel (``fill_mode``). Identity unless ``training``.

        Args:
            rotation: Maximum rotation in degrees, either way.
            shift: Maximum shift as a fraction of width (x) and height (y), either way.
            shear: Maximum shear along x (x offset per unit of y), either way.
            zoom: Zoom factors drawn from [1 - zoom, 1 + zoom], independently per axis.
            horizontal_flip: Flip half of the images left-right.
            fill_mode: ``nearest``, ``reflect``, ``wrap`` or ``constant`` (zeros).
            seed: Op-level seed of the random draws.
        """

        def __init__(
            self,
            rotation: float = 40.0,
            shift: float = 0.2,
            shear: float = 0.2,
            zoom: float = 0.2,
            horizontal_flip: bool = True,
            fill_mode: str = "nearest",
            seed: int | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(**kwargs)
            if fill_mode not in ("nearest", "reflect", "wrap", "constant"):
                raise ValueError(
                    f"fill_mode must be nearest, reflect, wrap or constant, got {fill_mode!r}."
                )
            self.rotation, self.shift, self.shear, self.zoom = rotation, shift, shear, zoom
            self.horizontal_flip, self.fill_mode, self.seed = horizontal_flip, fill_mode, seed

        def call(self, images: Any, training: Any = None) -> Any:
            if not training:
                return images
            images = tf.convert_to_tensor(images)
            shape = tf.shape(images)
            count = shape[0]
            height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
            offsets = iter(range(8))

            def draw(low: float = 0.0, high: float = 1.0) -> Any:
                offset = next(offsets)
                seed = None if self.seed is None else self.seed + offset
                return tf.random.uniform([count], low, high, seed=seed)

            angle = draw(-self.rotation, self.rotation) * (math.pi / 180.0)
            shift_x = draw(-self.shift, self.shift) * width
            shift_y = draw(-self.shift, self.shift) * height
            shear = draw(-self.shear, self.shear)
            zoom_x = draw(1.0 - self.zoom, 1.0 + self.zoom)
            zoom_y = draw(1.0 - self.zoom, 1.0 + self.zoom)
            flip = tf.ones_like(angle)
            if self.horizontal_flip:
                flip = tf.where(draw() < 0.5, -1.0, 1.0)
            cos, sin = tf.cos(angle), tf.sin(angle)
            # A = R(angle) @ [[1, shear], [0, 1]] @ diag(zoom_x * flip, zoom_y)
            a00, a01 = cos * zoom_x * flip, (cos * shear - sin) * zoom_y
            a10, a11 = sin * zoom_x * flip, (sin * shear + cos) * zoom_y
            centre_x, centre_y = (width - 1.0) / 2.0, (height - 1.0) / 2.0
            b0 = centre_x + shift_x - a00 * centre_x - a01 * centre_y
            b1 = centre_y + shift_y - a10 * centre_x - a11 * centre_y
            zeros = tf.zeros_like(a00)
            transforms = tf.stack([a00, a01, b0, a10, a11, b1, zeros, zeros], axis=1)
            out = tf.raw_ops.ImageProjectiveTransformV3(
                images=tf.cast(images, tf.float32),
                transforms=transforms,
                output_shape=shape[1:3],
                fill_value=0.0,
                interpolation="BILINEAR",
                fill_mode=self.fill_mode.upper(),
            )
            return tf.cast(out, self.compute_dtype)

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            config: dict[str, Any] = super().get_config()
            config.update(
                rotation=self.rotation,
                shift=self.shift,
                shear=self.shear,
                zoom=self.zoom,
                horizontal_flip=self.horizontal_flip,
                fill_mode=self.fill_mode,
                seed=self.seed,
            )
            return config

    return RandomAffine


@functools.cache
def random_shear_class() -> Any:
    """``keras.layers.RandomShear`` along x, with a config that survives saving and loading.

    Keras 3.15's RandomShear stores its factor as ``(-f, f)`` and then refuses that range when the
    model is loaded; this subclass (registered as ``catsdogs>RandomShearX``) stores ``f`` only.
    Defined on first use so importing this module stays light; ``fit_resumable`` calls it before
    loading a checkpoint.
    """
    import keras

    @keras.saving.register_keras_serializable(package="catsdogs")
    class RandomShearX(keras.layers.RandomShear):  # type: ignore[misc]
        """Random shear along x by up to ``factor`` of the image, either direction."""

        def __init__(self, factor: float = 0.2, **kwargs: Any) -> None:
            kwargs.pop("x_factor", None)
            kwargs.pop("y_factor", None)
            super().__init__(x_factor=factor, y_factor=0.0, **kwargs)
            self.factor = factor

        def get_config(self) -> dict[str, Any]:
            config: dict[str, Any] = super().get_config()
            config.pop("x_factor", None)
            config.pop("y_factor", None)
            config["factor"] = self.factor
            return config

    return RandomShearX


def fits_in_memory(count: int, image_size: tuple[int, int], limit_bytes: int) -> bool:
    """Whether ``count`` decoded uint8 RGB images of ``image_size`` take at most ``limit_bytes``."""
    return count * image_size[0] * image_size[1] * 3 <= limit_bytes


def input_pipeline(
    dataset_dir: Path,
    manifest: dict[str, Any],
    split: str,
    *,
    image_size: tuple[int, int],
    batch_size: int,
    seed: int,
    training: bool,
    augmentation: Any = None,
    cache_limit_bytes: int = DEFAULT_CACHE_LIMIT_BYTES,
    repeat: bool = False,
) -> Any:
    """Batched ``(uint8 images [N, H, W, 3], float32 labels [N, 1])`` of one prepared split.

    Records are read and JPEG-decoded in parallel (``records.read_split``), cached in memory when
    the decoded split fits in ``cache_limit_bytes``, shuffled with ``seed`` (reshuffled every
    epoch) when ``training``, batched, optionally augmented (``augmentation`` is mapped over
    batches with ``training=True``; returns float32 then) and prefetched.

    Args:
        dataset_dir: Local dataset folder (from ``records.local_dataset``).
        manifest: Its manifest.
        split: ``train``, ``val`` or ``test``.
        image_size: ``(height, width)`` to resize to.
        batch_size: Images per batch (the last batch may be smaller).
        seed: Shuffle seed.
        training: Shuffle (and augment, if given).
        augmentation: A Keras layer to map over training batches, or None (e.g. when the model
            applies it itself, as train_scratch's does).
        cache_limit_bytes: Cache decoded images only up to this size (0 = never).
        repeat: Repeat forever (for benchmarks that take a fixed number of batches).
    """
    import tensorflow as tf

    count = int(manifest["splits"][split]["count"])
    data = records.read_split(dataset_dir, manifest, split, image_size)
    data = data.apply(tf.data.experimental.assert_cardinality(count))
    if cache_limit_bytes and fits_in_memory(count, image_size, cache_limit_bytes):
        data = data.cache()
    if repeat:
        data = data.repeat()
    if training:
        data = data.shuffle(max(1, min(count, 10_000)), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    data = data.map(
        lambda x, y: (x, tf.cast(tf.reshape(y, [-1, 1]), tf.float32)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if training and augmentation is not None:
        data = data.map(
            lambda x, y: (augmentation(tf.cast(x, tf.float32), training=True), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return data.prefetch(tf.data.AUTOTUNE)


# ------------------------------------------------------------------------------ output claim


def checkpoint_location(output: str, settings: TrainingSettings) -> str:
    """The checkpoint folder: ``settings.checkpoint_dir`` or ``<output>/.checkpoint``."""
    return settings.checkpoint_dir or storage.join(output, CHECKPOINT_SUBDIR)


def _read_json(uri: str) -> Any:
    try:
        return json.loads(storage.read_text(uri))
    except json.JSONDecodeError as error:
        raise RunConflictError(
            f"{uri} is not valid JSON ({error}); it is not a run this tool wrote. Choose another "
            "output location or delete it."
        ) from error


def output_status(output: str, identity: dict[str, Any]) -> str:
    """What ``output`` holds, without changing anything.

    Returns:
        ``"new"`` (nothing of a run yet), ``"resume"`` (run.json of this same run, unfinished) or
        ``"complete"`` (this same run already finished: model.keras is there).

    Raises:
        RunConflictError: the output holds a different run, or files that are not a run.
    """
    run_uri = storage.join(output, RUN_FILE)
    if storage.exists(run_uri):
        existing = _read_json(run_uri)
        if existing.get("identity") != identity:
            difference = _describe_difference(existing.get("identity", {}), identity)
            raise RunConflictError(
                f"Output {output} holds a different run ({difference}). Nothing was changed. "
                "Choose another --output, rerun with that run's settings to resume it, or delete "
                "the folder to start over."
            )
        return "complete" if storage.exists(storage.join(output, MODEL_FILE)) else "resume"
    if storage.is_dir(output):
        prefix = CHECKPOINT_SUBDIR + "/"
        others = [n for n in storage.list_files(output) if not n.startswith(prefix)]
        if others:
            raise RunConflictError(
                f"Output {output} is not empty and holds no {RUN_FILE} (found: "
                f"{', '.join(others[:5])}). Nothing was changed. Choose an empty or new output "
                "location."
            )
    return "new"


def claim_output(output: str, identity: dict[str, Any], run_record: dict[str, Any]) -> str:
    """Like ``output_status``, and when ``"new"`` record the run (create-only run.json) in it."""
    status = output_status(output, identity)
    if status != "new":
        return status
    record = dict(run_record, identity=identity)
    try:
        storage.write_text(
            storage.join(output, RUN_FILE),
            json.dumps(record, indent=2, sort_keys=True),
            if_absent=True,
        )
    except storage.AlreadyExistsError:  # another process claimed it first
        return claim_output(output, identity, run_record)
    return "new"


# ------------------------------------------------------------------------------ resumable fit


@dataclass
class FitResult:
    """What ``fit_resumable`` produced."""

    model: Any
    history: dict[str, list[float]]
    resumed_from: int
    train_seconds: float
    stopped_early: bool


def _load_state(checkpoint: str, identity: dict[str, Any]) -> dict[str, Any] | None:
    uri = storage.join(checkpoint, STATE_FILE)
    if not storage.exists(uri):
        return None
    state: dict[str, Any] = _read_json(uri)
    if state.get("identity") != identity:
        raise RunConflictError(
            f"Checkpoint folder {checkpoint} holds a different run "
            f"({_describe_difference(state.get('identity', {}), identity)}). Nothing was changed. "
            "Choose another --checkpoint-dir, or delete that folder to start over."
        )
    return state


def _should_stop(history: dict[str, list[float]], patience: int) -> bool:
    losses = history.get("val_loss", [])
    if patience <= 0 or len(losses) <= patience:
        return False
    best = min(range(len(losses)), key=losses.__getitem__)
    return len(losses) - 1 - best >= patience


def fit_resumable(
    build_model: Callable[[], Any],
    train: Any,
    val: Any,
    settings: TrainingSettings,
    checkpoint: str,
    identity: dict[str, Any],
    *,
    log: Log = _print,
    custom_objects: dict[str, Any] | None = None,
) -> FitResult:
    """``model.fit`` that checkpoints after every epoch and resumes from the last one.

    Args:
        build_model: Returns a fresh compiled model (called only when there is no checkpoint).
        train: Training tf.data.Dataset (batched).
        val: Validation tf.data.Dataset (batched).
        settings: Epochs and early-stopping patience are used here.
        checkpoint: Checkpoint folder (local or gs://).
        identity: The run identity (``run_identity``); a checkpoint of another run is an error.
        log: Where per-epoch progress lines go.
        custom_objects: Passed to ``keras.models.load_model`` when resuming.
    """
    import keras

    state = _load_state(checkpoint, identity)
    if state is not None:
        random_shear_class()  # registered before loading a model that uses them
        random_affine_class()
        with tempfile.TemporaryDirectory(prefix="catsdogs-ckpt-") as tmp:
            local = Path(tmp, MODEL_FILE)
            storage.download_file(storage.join(checkpoint, state["model_file"]), local)
            model = keras.models.load_model(local, custom_objects=custom_objects)
        history: dict[str, list[float]] = {k: list(v) for k, v in state["history"].items()}
        done, seconds_before = int(state["epoch"]), float(state["train_seconds"])
        keras.utils.set_random_seed(settings.seed + done)  # fresh, reproducible randomness
        log(f"Resumed from epoch {done} of {settings.epochs} (checkpoint {checkpoint}).")
    else:
        model, history, done, seconds_before = build_model(), {}, 0, 0.0
    stopped = state is not None and bool(state.get("stopped_early"))
    if (
        done >= settings.epochs
        or stopped
        or _should_stop(history, settings.early_stopping_patience)
    ):
        return FitResult(model, history, done, seconds_before, stopped)

    class Checkpointer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds = seconds_before
            self.stopped = False
            self.started = time.monotonic()

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.started = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            took = time.monotonic() - self.started
            self.seconds += took
            for key, value in (logs or {}).items():
                history.setdefault(key, []).append(float(value))
            self.stopped = _should_stop(history, settings.early_stopping_patience)
            _save_checkpoint(
                self.model, checkpoint, epoch + 1, history, self.seconds, identity, self.stopped
            )
            figures = "  ".join(f"{k} {v[-1]:.4f}" for k, v in history.items())
            log(f"Epoch {epoch + 1}/{settings.epochs}  {figures}  ({took:.1f} s)")
            if self.stopped:
                log(
                    f"Early stopping: val_loss has not improved for "
                    f"{settings.early_stopping_patience} epochs."
                )
                self.model.stop_training = True

    callback = Checkpointer()
    model.fit(
        train,
        validation_data=val,
        epochs=settings.epochs,
        initial_epoch=done,
        callbacks=[callback],
        shuffle=False,  # the dataset shuffles itself
        verbose=0,
    )
    return FitResult(model, history, done, callback.seconds, callback.stopped)


def _save_checkpoint(
    model: Any,
    checkpoint: str,
    epoch: int,
    history: dict[str, list[float]],
    seconds: float,
    identity: dict[str, Any],
    stopped: bool,
) -> None:
    """Model (with optimizer state) first, then state.json pointing at it, then the old model."""
    name = f"model-epoch-{epoch:05d}.keras"
    previous = _load_state(checkpoint, identity)
    with tempfile.TemporaryDirectory(prefix="catsdogs-ckpt-") as tmp:
        local = Path(tmp, MODEL_FILE)
        model.save(local)
        storage.upload_file(local, storage.join(checkpoint, name))
    state = {
        "epoch": epoch,
        "history": history,
        "train_seconds": seconds,
        "identity": identity,
        "model_file": name,
        "stopped_early": stopped,
    }
    storage.write_text(storage.join(checkpoint, STATE_FILE), json.dumps(state, indent=1))
    if previous is not None and previous["model_file"] != name:
        storage.delete(storage.join(checkpoint, previous["model_file"]))


def copy_weights_by_name(source: Any, target: Any) -> Any:
    """Copy each layer's weights from ``source`` into the same-named layer of ``target``.

    For exporting a model without its training-only layers (augmentation): build the inference
    model with the same layer names, copy, save. Every layer of ``target`` must exist in
    ``source``. Returns ``target``.
    """
    for layer in target.layers:
        layer.set_weights(source.get_layer(layer.name).get_weights())
    optimizer, trained = getattr(target, "optimizer", None), getattr(source, "optimizer", None)
    if optimizer is not None and trained is not None and trained.built:
        optimizer.build(target.trainable_variables)  # keep the optimizer state with the weights
        pairs = list(zip(optimizer.variables, trained.variables, strict=False))
        if len(optimizer.variables) == len(trained.variables) and all(
            tuple(a.shape) == tuple(b.shape) for a, b in pairs
        ):
            for mine, theirs in pairs:
                mine.assign(theirs)
    return target


def delete_checkpoint(checkpoint: str) -> None:
    """Remove the files this module wrote in a checkpoint folder (state first)."""
    if not storage.is_dir(checkpoint):
        return
    storage.delete(storage.join(checkpoint, STATE_FILE))
    for name in storage.list_files(checkpoint):
        if name.startswith("model-epoch-") and name.endswith(".keras") and "/" not in name:
            storage.delete(storage.join(checkpoint, name))
    if not storage.is_gcs(checkpoint):
        try:
            Path(checkpoint).rmdir()
        except OSError:
            pass  # not empty: something else lives there too


# ------------------------------------------------------------------------------ outputs


def plot_curves(history: dict[str, list[float]], title: str = "") -> bytes:
    """PNG of training vs validation accuracy and loss, as the seed plots them ('bo' vs 'b')."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis, metric in zip(axes, ("accuracy", "loss"), strict=True):
        train, val = history.get(metric, []), history.get(f"val_{metric}", [])
        epochs = range(1, max(len(train), len(val)) + 1)
        if train:
            axis.plot(epochs[: len(train)], train, "bo", label=f"Training {metric}")
        if val:
            axis.plot(epochs[: len(val)], val, "b", label=f"Validation {metric}")
        axis.set_title(f"Training and validation {metric}")
        axis.set_xlabel("Epoch")
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def summarize(
    history: dict[str, list[float]],
    *,
    epochs_planned: int,
    train_seconds: float,
    resumed_from: int,
    stopped_early: bool,
    device: str,
) -> dict[str, Any]:
    """metrics.json content: final and best validation figures, epochs run, training time."""
    val_acc, val_loss = history.get("val_accuracy", []), history.get("val_loss", [])
    out: dict[str, Any] = {
        f"final_{key}": values[-1] for key, values in sorted(history.items()) if values
    }
    if val_acc:
        best = max(range(len(val_acc)), key=val_acc.__getitem__)
        out.update(best_val_accuracy=val_acc[best], best_val_accuracy_epoch=best + 1)
    if val_loss:
        best = min(range(len(val_loss)), key=val_loss.__getitem__)
        out.update(best_val_loss=val_loss[best], best_val_loss_epoch=best + 1)
    epochs_run = len(next(iter(history.values()), []))
    out.update(
        epochs_run=epochs_run,
        epochs_planned=epochs_planned,
        stopped_early=stopped_early,
        resumed_from_epoch=resumed_from,
        train_seconds=round(train_seconds, 3),
        seconds_per_epoch=round(train_seconds / epochs_run, 3) if epochs_run else None,
        device=device,
    )
    return out


def write_outputs(
    output: str,
    model: Any,
    history: dict[str, list[float]],
    metrics: dict[str, Any],
    *,
    title: str = "",
) -> None:
    """Write history.json, metrics.json, curves.png, then model.keras (last), each atomically."""
    storage.write_text(storage.join(output, HISTORY_FILE), json.dumps(history, indent=1))
    storage.write_text(
        storage.join(output, METRICS_FILE), json.dumps(metrics, indent=2, sort_keys=True)
    )
    storage.write_bytes(storage.join(output, CURVES_FILE), plot_curves(history, title))
    with tempfile.TemporaryDirectory(prefix="catsdogs-model-") as tmp:
        local = Path(tmp, MODEL_FILE)
        model.save(local)
        storage.upload_file(local, storage.join(output, MODEL_FILE))


def curves_html(png: bytes, metrics: dict[str, Any], title: str = "Training curves") -> str:
    """A self-contained HTML page: the curves (base64 PNG) and a table of the figures."""
    rows = "\n".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in sorted(metrics.items())
    )
    data = base64.b64encode(png).decode("ascii")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}td{padding:2px 12px}</style></head><body>"
        f"<h2>{html.escape(title)}</h2><img alt='training curves' "
        f"src='data:image/png;base64,{data}'/><table>{rows}</table></body></html>"
    )


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------------------ the whole run


@dataclass
class TrainingResult:
    """What ``run_training`` produced (also when the same run was already complete)."""

    output: str
    metrics: dict[str, Any]
    history: dict[str, list[float]]
    status: str  # "trained", "resumed" or "complete"
    kind: str = ""


def run_record(
    kind: str, data: str, settings: TrainingSettings, manifest: dict[str, Any]
) -> dict[str, Any]:
    """What run.json records about a run: trainer, data, settings, classes, versions, host."""
    import keras
    import tensorflow as tf

    return {
        "kind": kind,
        "data": str(data),
        "settings": settings.to_dict(),
        "classes": manifest["classes"],
        "versions": {
            "python": sys.version.split()[0],
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        "host": platform.node(),
        "started_unix": int(time.time()),
    }


def finished_result(output: str, kind: str) -> TrainingResult:
    """The result of a run that ``output`` already holds complete (nothing is retrained)."""
    metrics = _read_json(storage.join(output, METRICS_FILE))
    history = _read_json(storage.join(output, HISTORY_FILE))
    return TrainingResult(output, metrics, history, "complete", kind)


def run_training(
    *,
    kind: str,
    data: str,
    output: str,
    settings: TrainingSettings,
    build_model: Callable[[TrainingSettings], Any],
    make_datasets: Callable[[Path, dict[str, Any], TrainingSettings], tuple[Any, Any]]
    | None = None,
    custom_objects: dict[str, Any] | None = None,
    export_model: Callable[[Any, TrainingSettings], Any] | None = None,
    log: Log = _print,
) -> TrainingResult:
    """Train resumably from a prepared dataset into a MODEL_DIR (see the module docstring).

    Args:
        kind: Trainer name recorded in run.json (``train_scratch``, ``train_transfer``...).
        data: Prepared dataset folder or gs:// prefix (needs ``train`` and ``val`` splits).
        output: Output folder or gs:// prefix.
        settings: The trainer's settings.
        build_model: Returns a fresh compiled model for ``settings`` (called after the device
            setup, so the dtype policy applies).
        make_datasets: Returns ``(train, val)`` batched datasets from the local dataset folder
            and manifest; default: ``input_pipeline`` without augmentation.
        custom_objects: For loading a checkpoint with custom layers.
        export_model: Turns the trained model into the one saved as model.keras (e.g. without
            training-only layers, see ``copy_weights_by_name``); default: saved as trained.
        log: Progress lines.

    Raises:
        records.DatasetError: no manifest, missing split, shard checksum mismatch.
        RunConflictError: the output or checkpoint folder holds a different run.
        GpuRequiredError: ``require_gpu`` without a GPU.
    """
    require_gpu_or_fail(settings.require_gpu)
    manifest = records.load_manifest(data)
    identity = run_identity(kind, settings, manifest)
    record = run_record(kind, data, settings, manifest)
    if output_status(output, identity) == "complete":
        log(f"{output} already holds this finished run; nothing to do.")
        return finished_result(output, kind)
    checkpoint = checkpoint_location(output, settings)
    device = setup_device(settings)
    try:
        log(f"Training {kind} on {device.describe()}; data {data}; output {output}.")
        with records.local_dataset(data, ("train", "val")) as (folder, local_manifest):
            claim_output(output, identity, record)  # after the data checked out: nothing to undo
            if make_datasets is None:
                train, val = default_datasets(folder, local_manifest, settings)
            else:
                train, val = make_datasets(folder, local_manifest, settings)
            result = fit_resumable(
                lambda: build_model(settings),
                train,
                val,
                settings,
                checkpoint,
                identity,
                log=log,
                custom_objects=custom_objects,
            )
        metrics = summarize(
            result.history,
            epochs_planned=settings.epochs,
            train_seconds=result.train_seconds,
            resumed_from=result.resumed_from,
            stopped_early=result.stopped_early,
            device=device.describe(),
        )
        final = result.model if export_model is None else export_model(result.model, settings)
        write_outputs(output, final, result.history, metrics, title=kind)
        delete_checkpoint(checkpoint)
    finally:
        restore_device(device)
    log(
        f"Done: {metrics['epochs_run']} epochs, best val_accuracy "
        f"{metrics.get('best_val_accuracy', float('nan')):.4f}; wrote {output}."
    )
    return TrainingResult(
        output, metrics, result.history, "resumed" if result.resumed_from else "trained", kind
    )


def default_datasets(
    folder: Path, manifest: dict[str, Any], settings: TrainingSettings
) -> tuple[Any, Any]:
    """``(train, val)`` from ``input_pipeline``: shuffled train, ordered val, no augmentation."""
    size, batch, seed = settings.image_size, settings.batch_size, settings.seed
    train = input_pipeline(
        folder, manifest, "train", image_size=size, batch_size=batch, seed=seed, training=True
    )
    val = input_pipeline(
        folder, manifest, "val", image_size=size, batch_size=batch, seed=seed, training=False
    )
    return train, val


def log_kfp_outputs(result: TrainingResult, metrics: Any, curves_path: str) -> None:
    """Log the numeric figures to a KFP Metrics artifact and write the curves HTML page.

    Args:
        result: What ``run_training`` returned.
        metrics: A ``dsl.Metrics`` output (anything with ``log_metric(name, value)``).
        curves_path: Local path of the HTML output (its ``.path``).
    """
    for name, value in sorted(result.metrics.items()):
        if isinstance(value, int | float) and not isinstance(value, bool):
            metrics.log_metric(name, float(value))
    png = storage.read_bytes(storage.join(result.output, CURVES_FILE))
    Path(curves_path).parent.mkdir(parents=True, exist_ok=True)
    Path(curves_path).write_text(
        curves_html(png, result.metrics, f"{result.kind or 'Training'} curves"),
        encoding="utf-8",
    )


def environment_summary() -> dict[str, Any]:
    """CPU count and GPU names, for benchmark and accuracy notes."""
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {"cpus": os.cpu_count(), "gpus": gpus, "machine": platform.machine()}
