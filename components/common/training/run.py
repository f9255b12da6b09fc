"""The one training run both trainers share: ``run_training`` around a trainer's ``fit`` function.

``run_training`` does everything that is the same for every trainer: the ``require_gpu`` check,
the manifest and run identity, "already finished", the run record, the checkpoint folder, the
device set-up (the trainer's ``fit`` runs inside the scope of a MirroredStrategy over every GPU
when there are several, see ``training.device``), the summary, the outputs and the checkpoint
deletion. The trainer supplies one
``fit(context) -> Trained`` that builds its model(s), trains them with ``context.fit`` (resumable,
a checkpoint every epoch) and returns the model to save.

Output folder (local, gs:// or s3://), the MODEL_DIR contract (``common.model_dir``):

    run.json        written first (create-only): the settings and data identity of the run
    history.json    {"loss": [...], "accuracy": [...], "val_loss": [...], "val_accuracy": [...]}
    metrics.json    final and best validation figures, epochs run, training time
    curves.png      training vs validation accuracy and loss, as the seed plots them
    model.keras     written last: a folder with it holds a finished run
    logs/           TensorBoard event files (``training.tracker``; MLflow too, when set)

The checkpoint (``training.checkpoint``) is deleted once the outputs are written.
"""

from __future__ import annotations

import contextlib
import json
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catsdogs.components.common import records, reports, storage
from catsdogs.components.common.model_dir import (
    CURVES_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    MODEL_FILE,
)
from catsdogs.components.common.training.checkpoint import (
    OUTPUT_FIX,
    FitResult,
    Log,
    checkpoint_location,
    claim_output,
    delete_checkpoint,
    fit_resumable,
    output_status,
    print_log,
    read_json,
    save_model,
)
from catsdogs.components.common.training.device import (
    global_batch_size,
    require_gpu_or_fail,
    restore_device,
    setup_device,
)
from catsdogs.components.common.training.settings import TrainingSettings, run_identity
from catsdogs.components.common.training.tracker import TrainingTracker


@dataclass
class TrainingResult:
    """What ``run_training`` produced (also when the same run was already complete)."""

    output: str
    metrics: dict[str, Any]
    history: dict[str, list[float]]
    status: str  # "trained", "resumed" or "complete"
    kind: str = ""


@dataclass
class Trained:
    """What a trainer's ``fit`` function returns to ``run_training``.

    Attributes:
        model: The model saved as model.keras (e.g. without training-only layers).
        fit: History, training time, resume point and early stop of the whole training.
        epochs_planned: Epochs the run would take without early stopping.
        metrics: Figures of this trainer to add to metrics.json.
    """

    model: Any
    fit: FitResult
    epochs_planned: int
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunContext:
    """What ``run_training`` hands the trainer's ``fit`` function."""

    dataset: records.Dataset
    settings: TrainingSettings
    checkpoint: str
    identity: dict[str, Any]
    log: Log
    output: str
    record: dict[str, Any] = field(repr=False)
    tracker: TrainingTracker | None = field(default=None, repr=False)

    @property
    def data(self) -> str:
        """The dataset's location, as given."""
        return self.dataset.uri

    @property
    def manifest(self) -> records.Manifest:
        """The dataset's manifest (read once, by ``run_training``)."""
        return self.dataset.manifest

    def claim(self) -> None:
        """Record the run in the output (run.json); call once the inputs checked out."""
        claim_output(self.output, self.identity, self.record)

    @contextlib.contextmanager
    def train_and_val(self) -> Iterator[tuple[Path, records.Manifest]]:
        """The train and val splits as a local folder and manifest.

        The output is claimed once they checked out, so a corrupt dataset fails before anything
        is written.
        """
        with records.local_dataset(self.dataset, ("train", "val")) as (folder, manifest):
            self.claim()
            yield folder, manifest

    def fit(
        self,
        build_model: Callable[[], Any],
        train: Any,
        val: Any,
        *,
        phase: str = "",
        settings: TrainingSettings | None = None,
    ) -> FitResult:
        """``fit_resumable`` in this run's checkpoint folder (``<checkpoint>/<phase>`` for a phase).

        Args:
            build_model: Returns a fresh compiled model (called only without a checkpoint).
            train: Training tf.data.Dataset (batched).
            val: Validation tf.data.Dataset (batched).
            phase: Name of one phase of a training in several (``frozen``, ``fine-tune``).
            settings: The phase's settings (its epochs, ``steps_per_epoch``); default: the run's.
        """
        settings = settings or self.settings
        folder, identity = self.checkpoint, self.identity
        if phase:
            folder, identity = storage.join(folder, phase), {**identity, "phase": phase}
        batch = global_batch_size(settings.batch_size)
        images = self.manifest.splits["train"].count
        if settings.steps_per_epoch:  # epochs of N batches, cycling through the reshuffled split
            train = train.repeat().take(settings.steps_per_epoch)
            images = settings.steps_per_epoch * batch
        callbacks = self.tracker.callbacks() if self.tracker else []
        result = fit_resumable(
            build_model,
            train,
            val,
            settings,
            folder,
            identity,
            log=self.log,
            images_per_epoch=images,
            images_per_batch=batch,
            callbacks=callbacks,
        )
        if self.tracker:
            self.tracker.phase_done(result.history)
        return result


def run_record(
    kind: str, data: str, settings: TrainingSettings, manifest: records.Manifest
) -> dict[str, Any]:
    """What run.json records about a run: trainer, data, settings, classes, versions, host."""
    import keras
    import tensorflow as tf

    return {
        "kind": kind,
        "data": str(data),
        "settings": settings.to_dict(),
        "classes": list(manifest.classes),
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
    metrics = read_json(storage.join(output, METRICS_FILE))
    history = read_json(storage.join(output, HISTORY_FILE))
    return TrainingResult(output, metrics, history, "complete", kind)


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
    files = {
        HISTORY_FILE: json.dumps(history, indent=1).encode("utf-8"),
        METRICS_FILE: json.dumps(metrics, indent=2, sort_keys=True).encode("utf-8"),
        CURVES_FILE: reports.plot_curves(history, title),
    }
    with storage.disk_full(output, ", ".join(files), sum(map(len, files.values())), OUTPUT_FIX):
        for name, data in files.items():
            storage.write_bytes(storage.join(output, name), data)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and not optimizer.built:  # saved built: loads without warnings
        optimizer.build(model.trainable_variables)
    save_model(model, output, MODEL_FILE)


def run_training(
    *,
    kind: str,
    data: str,
    output: str,
    settings: TrainingSettings,
    fit: Callable[[RunContext], Trained],
    title: str = "",
    log: Log = print_log,
) -> TrainingResult:
    """Train resumably from a prepared dataset into a MODEL_DIR (see the module docstring).

    Args:
        kind: Trainer name recorded in run.json (``train_scratch``, ``train_transfer``...).
        data: Prepared dataset folder or gs:// / s3:// prefix (needs ``train`` and ``val`` splits).
        output: Output folder or gs:// / s3:// prefix.
        settings: The trainer's settings.
        fit: The trainer's training (called after the device set-up, inside the strategy's
            scope, so the dtype policy and the replicas apply to the models and datasets it
            builds): calls ``context.claim()`` (or uses
            ``context.train_and_val()``) before it trains, and returns what to save.
        title: What is trained, for the log and the curves (default: ``kind``).
        log: Progress lines.

    Raises:
        DatasetError: no manifest, missing split, shard checksum mismatch.
        OutputConflictError: the output or checkpoint folder holds a different run.
        GpuRequiredError: ``require_gpu`` without a GPU.
        StorageError: A disk filled up (the message names the folder and the space needed).
    """
    require_gpu_or_fail(settings.require_gpu)
    dataset = records.Dataset.open(data)
    manifest = dataset.manifest
    identity = run_identity(kind, settings, manifest)
    if output_status(output, identity) == "complete":
        log(f"{output} already holds this finished run; nothing to do.")
        return finished_result(output, kind)
    record = run_record(kind, data, settings, manifest)
    checkpoint = checkpoint_location(output, settings)
    device = setup_device(settings)
    tracker = TrainingTracker.start(kind, output, settings.to_dict())
    try:
        context = RunContext(dataset, settings, checkpoint, identity, log, output, record, tracker)
        log(f"Training {title or kind} on {device.describe()}; data {data}; output {output}.")
        with device.strategy.scope():
            trained = fit(context)
        result = trained.fit
        metrics = summarize(
            result.history,
            epochs_planned=trained.epochs_planned,
            train_seconds=result.train_seconds,
            resumed_from=result.resumed_from,
            stopped_early=result.stopped_early,
            device=device.describe(),
        )
        metrics.update(trained.metrics)
        write_outputs(output, trained.model, result.history, metrics, title=title or kind)
        delete_checkpoint(checkpoint)
        tracker.finish(metrics, result.history)
    finally:
        tracker.close()  # FAILED unless finish() ran
        restore_device(device)
    log(
        f"Done: {metrics['epochs_run']} epochs, best val_accuracy "
        f"{metrics.get('best_val_accuracy', float('nan')):.4f}; wrote {output}."
    )
    status = "resumed" if result.resumed_from else "trained"
    return TrainingResult(output, metrics, result.history, status, kind)


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
        reports.curves_html(png, result.metrics, f"{result.kind or 'Training'} curves"),
        encoding="utf-8",
    )
