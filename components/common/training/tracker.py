"""The tracking of one training run: TensorBoard event files and MLflow per-epoch metrics.

``run_training`` starts a :class:`TrainingTracker` (see ``common.tracking`` for what is logged
where); ``RunContext.fit`` hands its Keras callbacks to every ``model.fit``.
"""

from __future__ import annotations

import contextlib
import datetime
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from catsdogs.components.common import config, storage, tempdirs
from catsdogs.components.common.model_dir import MODEL_FILE
from catsdogs.components.common.tracking import LOGS_DIR, Run, one_line, sha256_of, warn

# How often, at most, event files are copied to the TensorBoard root (and a remote model folder).
MIRROR_SECONDS = 30.0


class TrainingTracker:
    """MLflow and TensorBoard for one training run (see the module docstring).

    ``start`` opens it; ``callbacks()`` go into each ``model.fit``; ``phase_done`` after it moves
    the step on, so a second phase (fine-tuning) continues the first one's epochs; ``finish``
    logs the outputs once they are written; ``close`` ends the run (FAILED without ``finish``).
    """

    def __init__(self, kind: str, output: str, run: Run, logs: Path) -> None:
        self.kind, self.output, self.run, self.logs = kind, output, run, logs
        self.offset = 0
        self.logged: set[int] = set()
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
        root = config.tensorboard_root()
        self.targets = [storage.join(output, LOGS_DIR)] if storage.is_remote(output) else []
        if root:
            self.targets.append(storage.join(root, kind, stamp))
        self.mirrored_at = 0.0
        self.sizes: dict[str, int] = {}
        self.finished = False
        self.resources = contextlib.ExitStack()

    @classmethod
    def start(cls, kind: str, output: str, settings: Mapping[str, Any]) -> TrainingTracker:
        """Open the tracking of a trainer writing ``output``.

        Args:
            kind: The trainer (``train_scratch``...): the run's name and TensorBoard folder.
            output: The model folder (local, gs://, s3://); event files go to ``<output>/logs``.
            settings: The trainer's settings, logged as params.
        """
        resources = contextlib.ExitStack()
        if storage.is_remote(output):  # gs://, s3://: written here, copied to <output>/logs
            logs = resources.enter_context(tempdirs.temporary("tensorboard"))
        else:
            logs = Path(output, LOGS_DIR)
        run = Run.open(kind, name=kind, tags={"catsdogs.task": kind})
        run.log_params(settings)
        tracker = cls(kind, output, run, logs)
        tracker.resources = resources
        return tracker

    def close(self) -> None:
        """End the MLflow run (FAILED unless ``finish`` ran) and remove temporary files."""
        try:
            self.run.close(failed=not self.finished)
        finally:
            self.resources.close()

    def callbacks(self) -> list[Any]:
        """Keras callbacks for one ``fit``: TensorBoard event files, MLflow per-epoch metrics."""
        import keras

        tracker = self

        class Board(keras.callbacks.TensorBoard):
            """Keras' TensorBoard callback, its steps continuing across training phases."""

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                super().on_epoch_end(tracker.offset + epoch, logs)
                for writer in self._writers.values():
                    writer.flush()
                tracker.epoch_done(tracker.offset + epoch, logs or {})

            def on_train_end(self, logs: Any = None) -> None:
                super().on_train_end(logs)
                tracker.mirror(force=True)

        return [Board(log_dir=str(self.logs), write_graph=True)]

    def epoch_done(self, step: int, logs: Mapping[str, Any]) -> None:
        """Log one epoch's metrics to MLflow and, now and then, copy the event files."""
        self.run.log_metrics(logs, step=step)
        self.logged.add(step)
        self.mirror()

    def phase_done(self, history: Mapping[str, list[float]]) -> None:
        """A ``fit`` ended: the next one's epochs come after this one's."""
        self.offset += len(next(iter(history.values()), []))

    def mirror(self, force: bool = False) -> None:
        """Copy new or grown event files to the targets (a remote model folder, the root)."""
        if not self.targets or not (force or time.monotonic() - self.mirrored_at > MIRROR_SECONDS):
            return
        self.mirrored_at = time.monotonic()
        files = [p for p in self.logs.rglob("*") if p.is_file()]
        changed = [p for p in files if self.sizes.get(str(p)) != p.stat().st_size]
        try:
            for path in changed:
                for target in self.targets:
                    name = path.relative_to(self.logs).as_posix()
                    storage.upload_file(path, storage.join(target, name))
                self.sizes[str(path)] = path.stat().st_size
        except Exception as error:  # noqa: BLE001 - tracking never fails a task
            warn(
                f"copying TensorBoard logs to {', '.join(self.targets)} failed "
                f"({one_line(error)}); {self.kind} goes on without it."
            )
            self.targets = []

    def finish(self, metrics: Mapping[str, Any], history: Mapping[str, list[float]]) -> None:
        """After the outputs are written: summary, epochs not logged yet, curves, model folder."""
        self.finished = True
        self.mirror(force=True)
        if not self.run.enabled:
            return
        if self.run.owned:  # a resumed run: the epochs trained before this process
            for step in range(len(next(iter(history.values()), []))):
                if step not in self.logged:
                    self.run.log_metrics({k: v[step] for k, v in history.items()}, step=step)
        self.run.log_metrics(metrics)
        self.run.set_tags(
            {"catsdogs.model": self.output, "catsdogs.model_sha256": _model_sha256(self.output)}
        )
        self.run.log_folder(self.output, "model")


def _model_sha256(output: str) -> str:
    return sha256_of(storage.join(output, MODEL_FILE))
