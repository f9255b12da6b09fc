"""A quiet TensorFlow start-up: no C++ start-up noise, every other line kept.

TensorFlow 2.21 prints at import, straight to file descriptor 2 and before its own logging is set
up (so neither Python's ``logging`` nor ``TF_CPP_MIN_LOG_LEVEL`` can hide them)::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 ... port.cc:153] oneDNN custom operations are on. ...
    I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
    I0000 ... cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use ...
    To enable the following instructions: AVX2 ..., rebuild TensorFlow with the appropriate ...

and, when it first looks for devices on a machine without an NVIDIA driver (even with
``CUDA_VISIBLE_DEVICES=-1``)::

    E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ...

:func:`install` makes the first ``import tensorflow`` of the process (directly or through keras)
run with file descriptor 2 captured; it lists the devices inside the same capture, then writes back
every line except those above. The cuInit line is dropped only where no ``/dev/nvidia*`` device
exists: on a GPU machine it is a real error. ``TF_CPP_MIN_LOG_LEVEL`` defaults to 1 (TensorFlow's
later INFO lines hidden, warnings and errors kept) unless the user set it; ``TF_ENABLE_ONEDNN_OPTS``
is left alone (oneDNN makes CPU training faster; only its notice is dropped).
"""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from catsdogs.components.common import hardware

# TensorFlow's C++ log line: severity + date, time, thread, source file:line "]", message.
_CPP_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ (?P<file>[\w.]+):\d+\] (?P<message>.*)$")
# (source file, start of message) of the start-up lines that are noise everywhere.
_NOISE = (
    ("port.cc", "oneDNN custom operations are on."),
    ("cudart_stub.cc", "Could not find cuda drivers on your machine"),
    ("cpu_feature_guard.cc", "This TensorFlow binary is optimized to use available CPU"),
)
# ... and the one that is noise only where there is no NVIDIA device to initialise.
_NO_DRIVER_NOISE = ("cuda_platform.cc", "failed call to cuInit")
_NOISE_LINES = (
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written"),
    re.compile(r"^To enable the following instructions: .*rebuild TensorFlow with the appropriate"),
)


def is_noise(line: str, *, gpu_present: bool) -> bool:
    """Whether ``line`` is TensorFlow start-up noise (see the module docstring).

    Args:
        line: One line of output, with or without its newline.
        gpu_present: Whether this machine has an NVIDIA device (then a cuInit failure is kept).
    """
    text = line.rstrip("\r\n")
    if any(pattern.match(text) for pattern in _NOISE_LINES):
        return True
    match = _CPP_LINE.match(text)
    if match is None:
        return False
    known = _NOISE if gpu_present else (*_NOISE, _NO_DRIVER_NOISE)
    return any(
        match["file"] == name and match["message"].startswith(start) for name, start in known
    )


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Capture file descriptor 2 for the block, then write back every line that is not noise."""
    gpu_present = hardware.has_nvidia_device()
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not is_noise(line, gpu_present=gpu_present))
            if kept:
                os.write(2, kept.encode())


class _QuietLoader:
    """Wraps TensorFlow's loader: its module runs (and finds its devices) inside the filter."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with filtered_stderr():
            self._loader.exec_module(module)
            module.config.list_physical_devices()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


class _QuietFinder:
    """A ``sys.meta_path`` finder that hands TensorFlow's spec a quiet loader, once."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)  # type: ignore[assignment]
        return spec


def install() -> None:
    """Make this process's TensorFlow start quietly; cheap (TensorFlow is not imported here).

    Call it before anything imports TensorFlow (the CLI's ``main``, each KFP component's body).
    Calling it again, or after TensorFlow was imported, only sets the environment default.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietFinder())  # type: ignore[arg-type]
