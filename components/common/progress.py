"""Progress where people wait: a bar on a terminal, a periodic line in logs.

Feature extraction, evaluation, prediction over many files, the export check and every training
epoch report through :class:`Progress`. On a terminal (``stream.isatty()``) it is a tqdm bar that
disappears when done; anywhere else (a KFP pod's log, ``catsdogs run``'s task logs, CI) it writes
one line every ``interval`` seconds and one at the end::

    Features of train: 640/2000 images, 85.3 images/s
    Features of train: 2000/2000 images, 88.1 images/s, done in 22.7 s

Both go to ``stream`` (stderr by default), so stdout keeps only a command's results.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Self, TextIO

# Seconds between two log lines when the stream is not a terminal.
LOG_INTERVAL_SECONDS = 15.0


class Progress:
    """Count ``unit`` done out of ``total`` and show it (use as a context manager).

    Args:
        what: What is being done, e.g. ``Features of train`` (the line's start).
        total: How many there are; None when unknown.
        unit: What is counted (``images``).
        stream: Where the bar or the lines go (default ``sys.stderr`` at creation).
        interval: Seconds between log lines (not on a terminal).
        enabled: False shows nothing at all.
    """

    def __init__(
        self,
        what: str,
        total: int | None,
        unit: str = "images",
        *,
        stream: TextIO | None = None,
        interval: float = LOG_INTERVAL_SECONDS,
        enabled: bool = True,
    ) -> None:
        self.what = what
        self.total = total
        self.unit = unit
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.enabled = enabled
        self.started = time.monotonic()
        self._last_line = self.started
        self._ended: float | None = None
        self._bar: Any = None
        if enabled and _is_terminal(self.stream):
            from tqdm import tqdm

            self._bar = tqdm(
                total=total, desc=what, unit=f" {unit}", file=self.stream, leave=False, ncols=100
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(finished=exc[0] is None)

    def update(self, count: int = 1) -> None:
        """``count`` more are done."""
        self.done += count
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(count)
            return
        now = time.monotonic()
        finished = self.total is not None and self.done >= self.total  # the ending says it
        if now - self._last_line >= self.interval and not finished:
            self._last_line = now
            self._write(self.line())

    def line(self, *, finished: bool = False) -> str:
        """``what: n/N images, x images/s`` (and ``, done in t s`` once finished)."""
        seconds = (self._ended or time.monotonic()) - self.started
        rate = self.done / seconds if seconds > 0 else 0.0
        out_of = f"/{self.total}" if self.total is not None else ""
        text = f"{self.what}: {self.done}{out_of} {self.unit}, {rate:.1f} {self.unit}/s"
        return f"{text}, done in {seconds:.1f} s" if finished else text

    def close(self, *, finished: bool = True) -> None:
        """Remove the bar; in logs, write the last line (only after finished work)."""
        if self._ended is None:
            self._ended = time.monotonic()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and finished and self.done:
            self._write(self.line(finished=True))
        self.enabled = False

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or fake stream
        return False


def keras_epochs(
    epochs: int, images_per_epoch: int | None, images_per_batch: int, **options: Any
) -> Any:
    """A Keras callback that shows each training epoch's progress (``Epoch 3/30 train: ...``).

    Args:
        epochs: The planned number of epochs (for ``3/30``).
        images_per_epoch: Training images in one epoch; None when unknown.
        images_per_batch: Images in one (global) batch; the last batch is capped at the total.
        options: Passed on to each epoch's :class:`Progress` (``stream``, ``interval``).
    """
    import keras

    class EpochProgress(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.progress: Progress | None = None

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            what = f"Epoch {epoch + 1}/{epochs} train"
            self.progress = Progress(what, images_per_epoch, **options)

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if self.progress is not None:
                seen = (batch + 1) * images_per_batch
                if images_per_epoch is not None:
                    seen = min(seen, images_per_epoch)
                self.progress.update(seen - self.progress.done)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if self.progress is not None:
                self.progress.close(finished=False)  # the epoch's own line follows
                self.progress = None

    return EpochProgress()
