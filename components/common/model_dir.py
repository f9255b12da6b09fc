"""The model folder: the names of the files a trainer writes, and loading the model back.

A model folder (local, gs:// or s3://), written by train_scratch or train_transfer:

    model.keras      the Keras model; takes raw RGB pixels (preprocessing inside), written last
    history.json     per-epoch metrics
    metrics.json     the trainer's summary (final and best validation figures, time, device)
    curves.png       training curves
    run.json         the run's identity (settings and dataset), for resuming and refusing others

An evaluation folder holds ``evaluation.json`` (never ``metrics.json``, the trainer's summary).
"""

from __future__ import annotations

import dataclasses
import json
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from catsdogs.components.common import records, storage, tempdirs
from catsdogs.components.common.errors import ModelError

MODEL_FILE = "model.keras"
HISTORY_FILE = "history.json"
METRICS_FILE = "metrics.json"
CURVES_FILE = "curves.png"
RUN_FILE = "run.json"
EVALUATION_FILE = "evaluation.json"
CHAMPION_FILE = "champion.json"  # the champion pointer (see components/promote/champion.py)


@dataclasses.dataclass(frozen=True)
class ResolvedModel:
    """The model folder behind a ``--model`` value, and the champion version it is, if any."""

    folder: str  # holds model.keras
    champion_version: int | None = None


def resolve(uri: str) -> ResolvedModel:
    """The one reading of ``--model``: a model folder, a champion location or a champion version.

    - a model folder (``model.keras`` in it), local or gs://; when it is a champion's
      ``versions/vNNNN`` folder, its version number comes along;
    - a champion location (``champion.json`` in it): the version the pointer names (read by
      ``champion.read_pointer``, which refuses any ``path`` but ``versions/vNNNN``).

    Raises:
        ModelError: Blank, or neither of the above (the message lists what the folder holds).
        StorageError: A champion pointer that is not valid or names another path.
    """
    text = str(uri).strip()
    if not text:
        raise ModelError(
            f"The model location is empty ({str(uri)!r}). Point --model at a model folder "
            "(model.keras), a champion location (champion.json) or a champion version folder."
        )
    if storage.exists(storage.join(text, MODEL_FILE)):
        match = re.search(r"(?:^|/)versions/v(\d+)/?$", text)
        return ResolvedModel(text, int(match.group(1)) if match else None)
    if storage.exists(storage.join(text, CHAMPION_FILE)):
        from catsdogs.components.promote import champion  # it imports this module

        record = champion.read_pointer(text).record  # checks path is exactly versions/vNNNN
        if record is None:
            raise ModelError(
                f"{text} has no champion yet (champion.json vanished while reading); run again."
            )
        return ResolvedModel(storage.join(text, record.path), record.version)
    found = ""
    if storage.is_dir(text):
        found = f" (it holds: {', '.join(storage.list_files(text)[:5]) or 'nothing'})"
    raise ModelError(
        f"{text} is not a model: it has no {MODEL_FILE} and no {CHAMPION_FILE}{found}. Point "
        "--model at a trainer's output folder, a champion location or one of its versions/vNNNN."
    )


@contextmanager
def local_model_file(model_dir: str) -> Iterator[Path]:
    """The local path of ``MODEL_DIR/model.keras`` (downloaded first when it is on gs://).

    Raises:
        ModelError: The location is empty, or the folder has no model.keras (the message lists
            what it holds).
    """
    if not str(model_dir).strip():
        raise ModelError(
            f"The model location is empty ({str(model_dir)!r}). Point --model at the output "
            "folder of `catsdogs train-scratch` or `catsdogs train-transfer`."
        )
    uri = storage.join(model_dir, MODEL_FILE)
    if not storage.exists(uri):
        found = ""
        if storage.is_dir(model_dir):
            found = f" (it holds: {', '.join(storage.list_files(model_dir)[:5]) or 'nothing'})"
        raise ModelError(
            f"{model_dir} is not a model folder: it has no {MODEL_FILE}{found}. Point --model at "
            "the output folder of `catsdogs train-scratch` or `catsdogs train-transfer`."
        )
    if not storage.is_remote(uri):
        yield Path(uri)
        return
    with tempdirs.temporary("model") as tmp:
        local = tmp / MODEL_FILE
        storage.download_file(uri, local)
        yield local


def load_model(model_dir: str) -> Any:
    """Load ``MODEL_DIR/model.keras`` (local, gs:// or s3://) for inference, with clear errors."""
    with local_model_file(model_dir) as path:
        return load_model_file(path, model_dir)


def load_model_file(path: Path, model_dir: str) -> Any:
    """Load a local model.keras that came from ``model_dir`` and check its input and output.

    Raises:
        ModelError: The file is not a Keras model, or not a binary image classifier.
    """
    if not zipfile.is_zipfile(path):  # Keras would say "File not found"
        raise ModelError(
            f"{storage.join(model_dir, MODEL_FILE)} is not a Keras model file: a .keras file is a "
            "zip archive and this one is not (corrupt, truncated, or another file renamed). Train "
            "the model again, or copy it again from where it was trained."
        )
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # keras raises many types for a bad file
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise ModelError(
            f"Could not load {storage.join(model_dir, MODEL_FILE)}: {type(error).__name__}: "
            f"{first_line}. Re-export the model with the trainer of this version of catsdogs."
        ) from error
    check_binary_model(model, model_dir)
    return model


def check_binary_model(model: Any, model_dir: str) -> None:
    """Models here take one RGB image and output one sigmoid unit; say so when they do not."""
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise ModelError(
            f"The model in {model_dir} takes input {model.input_shape}; expected one RGB image "
            "batch (None, height, width, 3)."
        )
    if tuple(model.output_shape)[-1] != 1:
        raise ModelError(
            f"The model in {model_dir} outputs {model.output_shape}; expected one sigmoid unit "
            "(P of the second class)."
        )


def image_size(model: Any) -> tuple[int, int] | None:
    """``(height, width)`` the model takes, or None when its input accepts any size."""
    height, width = model.input_shape[1:3]
    return (int(height), int(width)) if height and width else None


def model_classes(model_dir: str) -> tuple[str, ...]:
    """Class names recorded in the model folder's run.json, else ``records.CLASSES``."""
    uri = storage.join(model_dir, RUN_FILE)
    if storage.exists(uri):
        try:
            found = json.loads(storage.read_text(uri)).get("classes")
        except (json.JSONDecodeError, AttributeError):
            found = None
        if isinstance(found, list) and len(found) == 2:
            return tuple(str(c) for c in found)
    return records.CLASSES
