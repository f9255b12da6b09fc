"""Predict the class of single images (files, folders, gs:// prefixes) with a saved model."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
from catsdogs.components.common import images, model_dir, records, storage
from catsdogs.components.common.progress import Progress


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The model's answer for one image, or why there is none."""

    image: str
    label: str | None = None
    probability: float | None = None  # P(label)
    positive: float | None = None  # P(classes[1])
    error: str | None = None

    def to_dict(self, classes: tuple[str, ...] = records.CLASSES) -> dict[str, Any]:
        """JSON-ready: image, label, probability, p_<positive class>; or image, error."""
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        return {
            "image": self.image,
            "label": self.label,
            "probability": self.probability,
            f"p_{classes[1]}": self.positive,
        }


def predict(
    model_uri: str, inputs: list[str], threshold: float = 0.5, *, progress: bool = False
) -> Iterator[Prediction]:
    """Yield one Prediction per image under ``inputs``; unreadable ones carry an ``error``.

    The model is loaded first (a bad model folder raises ``ModelError``); after that nothing
    stops the batch: each image that cannot be read or decoded is reported and skipped. With
    ``progress``, more than one image shows ``Predicting: n/N images, x images/s`` on stderr.
    """
    model_uri = model_dir.resolve(model_uri).folder
    model = model_dir.load_model(model_uri)
    classes = model_dir.model_classes(model_uri)
    size = model_dir.image_size(model)
    sources = images.expand(inputs)
    with Progress("Predicting", len(sources), enabled=progress and len(sources) > 1) as bar:
        for source in sources:
            yield _predict_one(model, classes, size, source, threshold)
            bar.update()


def _predict_one(
    model: Any,
    classes: tuple[str, ...],
    size: tuple[int, int] | None,
    source: images.ImageSource,
    threshold: float,
) -> Prediction:
    if source.error is not None:
        return Prediction(source.uri, error=source.error)
    try:
        pixels = images.load(source.uri)
    except (images.ImageError, storage.StorageError) as error:
        return Prediction(source.uri, error=str(error))
    view = images.resize(pixels, size) if size else pixels
    positive = float(np.asarray(model(view[None].astype(np.float32), training=False)).ravel()[0])
    is_positive = positive >= threshold
    return Prediction(
        source.uri,
        label=classes[1] if is_positive else classes[0],
        probability=positive if is_positive else 1.0 - positive,
        positive=positive,
    )
