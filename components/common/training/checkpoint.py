"""Resuming: the output's run claim (run.json), per-epoch checkpoints and the resumable fit.

Checkpoint folder (default ``<output>/.checkpoint``; local or gs://): ``state.json`` (epochs done,
history, training seconds, the run identity, the current model file) and ``model-epoch-NNNNN.keras``
(model + optimizer state), or one subfolder per phase holding them (``frozen/``, ``fine-tune/``).
A rerun of the same command resumes after the last completed epoch.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from catsdogs.components.common import storage, tempdirs
from catsdogs.components.common.errors import OutputConflictError
from catsdogs.components.common.model_dir import MODEL_FILE, RUN_FILE
from catsdogs.components.common.training.augmentation import (
    random_affine_class,
)
from catsdogs.components.common.training.settings import TrainingSettings, describe_difference

STATE_FILE = "state.json"
CHECKPOINT_SUBDIR = ".checkpoint"
OUTPUT_FIX = "Free some space there, or choose an --output (or --checkpoint-dir) on a larger disk."

Log = Callable[[str], None]


def print_log(message: str) -> None:
    """The default ``Log``: one line on stdout, flushed (so KFP shows it at once)."""
    print(message, flush=True)


# ------------------------------------------------------------------------------ output claim


def checkpoint_location(output: str, settings: TrainingSettings) -> str:
    """The checkpoint folder: ``settings.checkpoint_dir`` or ``<output>/.checkpoint``."""
    return settings.checkpoint_dir or storage.join(output, CHECKPOINT_SUBDIR)


def read_json(uri: str) -> Any:
    """The JSON content of ``uri`` (run.json, state.json, metrics.json...); not JSON is a conflict."""
    try:
        return json.loads(storage.read_text(uri))
    except json.JSONDecodeError as error:
        raise OutputConflictError(
            f"{uri} is not valid JSON ({error}); it is not a run this tool wrote. Choose another "
            "output location or delete it."
        ) from error


def output_status(output: str, identity: dict[str, Any]) -> str:
    """What ``output`` holds, without changing anything.

    Returns:
        ``"new"`` (nothing of a run yet), ``"resume"`` (run.json of this same run, unfinished) or
        ``"complete"`` (this same run already finished: model.keras is there).

    Raises:
        OutputConflictError: the output holds a different run, or files that are not a run.
    """
    run_uri = storage.join(output, RUN_FILE)
    if storage.exists(run_uri):
        existing = read_json(run_uri)
        if existing.get("identity") != identity:
            difference = describe_difference(existing.get("identity", {}), identity)
            raise OutputConflictError(
                f"Output {output} holds a different run ({difference}; all of its settings: "
                f"{run_uri}). Nothing was changed. Choose another --output, rerun with that run's "
                "settings to resume it, or delete the folder to start over."
            )
        return "complete" if storage.exists(storage.join(output, MODEL_FILE)) else "resume"
    if storage.is_dir(output):
        prefix = CHECKPOINT_SUBDIR + "/"
        others = [n for n in storage.list_files(output) if not n.startswith(prefix)]
        if others:
            raise OutputConflictError(
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
    text = json.dumps(dict(run_record, identity=identity), indent=2, sort_keys=True)
    try:
        with storage.disk_full(output, RUN_FILE, len(text), OUTPUT_FIX):
            storage.write_text(storage.join(output, RUN_FILE), text, if_absent=True)
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
    state: dict[str, Any] = read_json(uri)
    if state.get("identity") != identity:
        raise OutputConflictError(
            f"Checkpoint folder {checkpoint} holds a different run "
            f"({describe_difference(state.get('identity', {}), identity)}). Nothing was changed. "
            "Choose another --checkpoint-dir, or delete that folder to start over."
        )
    return state


def should_stop(history: dict[str, list[float]], patience: int) -> bool:
    """Whether val_loss has not improved for ``patience`` epochs (never when ``patience`` is 0)."""
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
    log: Log = print_log,
    images_per_epoch: int | None = None,
    images_per_batch: int = 0,
    callbacks: Sequence[Any] = (),
) -> FitResult:
    """``model.fit`` that checkpoints after every epoch and resumes from the last one.

    Args:
        build_model: Returns a fresh compiled model (called only when there is no checkpoint).
        train: Training tf.data.Dataset (batched).
        val: Validation tf.data.Dataset (batched).
        settings: Epochs and early-stopping patience are used here.
        checkpoint: Checkpoint folder (local, gs:// or s3://).
        identity: The run identity (``run_identity``); a checkpoint of another run is an error.
        log: Where per-epoch progress lines go.
        images_per_epoch: Training images in one epoch, for the progress within each epoch.
        images_per_batch: Images in one batch (0: ``settings.batch_size``).
        callbacks: More Keras callbacks (after the checkpointer: TensorBoard, MLflow).
    """
    import keras
    from catsdogs.components.common import progress

    state = _load_state(checkpoint, identity)
    if state is not None:
        random_affine_class()  # registered before loading a model that uses it
        with tempdirs.temporary("checkpoint") as tmp:
            local = Path(tmp, MODEL_FILE)
            storage.download_file(storage.join(checkpoint, state["model_file"]), local)
            model = keras.models.load_model(local)
        history: dict[str, list[float]] = {k: list(v) for k, v in state["history"].items()}
        done, seconds_before = int(state["epoch"]), float(state["train_seconds"])
        keras.utils.set_random_seed(settings.seed + done)  # fresh, reproducible randomness
        log(f"Resumed from epoch {done} of {settings.epochs} (checkpoint {checkpoint}).")
    else:
        model, history, done, seconds_before = build_model(), {}, 0, 0.0
    stopped = state is not None and bool(state.get("stopped_early"))
    if done >= settings.epochs or stopped or should_stop(history, settings.early_stopping_patience):
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
            self.stopped = should_stop(history, settings.early_stopping_patience)
            _save_checkpoint(
                self.model, checkpoint, epoch + 1, history, self.seconds, identity, self.stopped
            )
            figures = "  ".join(f"{k} {v[-1]:.4f}" for k, v in history.items())
            rate = f", {images_per_epoch / took:.0f} images/s" if images_per_epoch and took else ""
            log(f"Epoch {epoch + 1}/{settings.epochs}  {figures}  ({took:.1f} s{rate})")
            if self.stopped:
                log(
                    f"Early stopping: val_loss has not improved for "
                    f"{settings.early_stopping_patience} epochs."
                )
                self.model.stop_training = True

    callback = Checkpointer()
    shown = progress.keras_epochs(
        settings.epochs, images_per_epoch, images_per_batch or settings.batch_size
    )
    model.fit(
        train,
        validation_data=val,
        epochs=settings.epochs,
        initial_epoch=done,
        callbacks=[shown, callback, *callbacks],
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
    save_model(model, checkpoint, name)
    state = {
        "epoch": epoch,
        "history": history,
        "train_seconds": seconds,
        "identity": identity,
        "model_file": name,
        "stopped_early": stopped,
    }
    text = json.dumps(state, indent=1)
    with storage.disk_full(checkpoint, STATE_FILE, len(text), OUTPUT_FIX):
        storage.write_text(storage.join(checkpoint, STATE_FILE), text)
    if previous is not None and previous["model_file"] != name:
        storage.delete(storage.join(checkpoint, previous["model_file"]))


def save_model(model: Any, folder: str, name: str) -> None:
    """Save ``model`` as ``folder/name`` (a .keras file): staged in TMPDIR, then copied atomically.

    Raises:
        StorageError: TMPDIR's or ``folder``'s disk filled up; no partial file is left behind.
    """
    variables = [*model.weights, *getattr(getattr(model, "optimizer", None), "variables", [])]
    needed = 4 * sum(math.prod(variable.shape) for variable in variables)  # float32 each
    with tempdirs.temporary("model") as tmp:
        local = tmp / MODEL_FILE
        staging = tempfile.gettempdir()
        with storage.disk_full(staging, f"{name} before copying it", needed, storage.TMPDIR_FIX):
            model.save(local)
        with storage.disk_full(folder, name, local.stat().st_size, OUTPUT_FIX):
            storage.upload_file(local, storage.join(folder, name))


def delete_checkpoint(checkpoint: str) -> None:
    """Remove the files ``fit_resumable`` wrote in a checkpoint folder and its phase subfolders.

    State files go first, so an interruption never leaves a state that names a deleted model;
    anything else in the folder (another run's features, foreign files) stays.
    """
    if not storage.is_dir(checkpoint):
        return
    ours = [n for n in storage.list_files(checkpoint) if _is_checkpoint_file(n)]
    for name in sorted(ours, key=lambda n: PurePosixPath(n).name != STATE_FILE):
        storage.delete(storage.join(checkpoint, name))
    if not storage.is_remote(checkpoint):
        folders = {PurePosixPath(n).parent for n in ours} | {PurePosixPath(".")}
        for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
            try:
                Path(checkpoint, folder).rmdir()
            except OSError:
                pass  # not empty: something else lives there too


def _is_checkpoint_file(name: str) -> bool:
    """``state.json`` or ``model-epoch-*.keras`` at the top of the folder or one level down."""
    path = PurePosixPath(name)
    written = path.name == STATE_FILE or (
        path.name.startswith("model-epoch-") and path.name.endswith(".keras")
    )
    return written and len(path.parts) <= 2
