"""Reading and checking prediction requests (KServe V1 and Open Inference V2) before the model runs.

Everything here is plain Python and Pillow (header reads only), so a bad request is refused with
a message naming what was wrong before any TensorFlow work starts:

- V1 (TF Serving's REST body): ``{"instances": [{"b64": "<base64 JPEG or PNG>"}, ...]}``.
- V2: one input ``image_bytes`` (``BYTES``, shape ``[N]``; base64 strings in JSON, raw bytes with
  the binary extension) or ``pixels`` (``FP32``, shape ``[N, height, width, 3]`` in [0, 255]).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
import warnings
from typing import Any

import numpy as np
from catsdogs.components.common.errors import CatsdogsError
from catsdogs.components.serve import signatures

MAX_REQUEST_BYTES = 32 * 1024 * 1024
MAX_IMAGE_BYTES = 16 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a 40-megapixel photo decodes to 120 MB; more is a pixel bomb
MAX_BATCH = 64
FORMATS = ("JPEG", "PNG")


class RequestError(CatsdogsError, ValueError):
    """A request the server refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class Batch:
    """The images of one request: encoded bytes, or float pixels at the model's size."""

    encoded: list[bytes] | None = None
    pixels: np.ndarray | None = None


def v1_batch(payload: Any) -> Batch:
    """The images of a V1 body ``{"instances": [{"b64": ...}, ...]}``, each checked.

    ``payload`` is the decoded JSON, or the raw body when the client sent no JSON content type.
    """
    if isinstance(payload, bytes | str):
        try:
            payload = json.loads(payload)
        except ValueError as error:
            raise RequestError(f"The request body is not JSON ({error}).") from error
    instances = payload.get("instances") if isinstance(payload, dict) else None
    if not isinstance(instances, list) or not instances:
        raise RequestError(
            'Expected a JSON body {"instances": [{"b64": "<base64 JPEG or PNG>"}, ...]} with at '
            f"least one instance, got {_describe(payload)}."
        )
    _check_batch_size(len(instances))
    encoded = []
    for index, instance in enumerate(instances):
        if not (isinstance(instance, dict) and isinstance(instance.get("b64"), str)):
            raise RequestError(
                f'instances[{index}] is {_describe(instance)}; expected {{"b64": "<base64 image>"}}.'
            )
        encoded.append(check_image(_b64decode(instance["b64"], f"instances[{index}].b64"), index))
    return Batch(encoded=encoded)


def v2_batch(request: Any, size: tuple[int, int]) -> Batch:
    """The images of a V2 ``InferRequest`` (one ``image_bytes`` or ``pixels`` input), checked."""
    inputs = list(getattr(request, "inputs", None) or [])
    names = [getattr(item, "name", "?") for item in inputs]
    if len(inputs) != 1 or names[0] not in (signatures.BYTES_INPUT, signatures.PIXELS_INPUT):
        raise RequestError(
            f"Expected one input named {signatures.BYTES_INPUT} (BYTES) or "
            f"{signatures.PIXELS_INPUT} (FP32), got {names or 'none'}."
        )
    item = inputs[0]
    if item.name == signatures.BYTES_INPUT:
        if item.datatype != "BYTES":
            raise RequestError(f"{item.name} must have datatype BYTES, got {item.datatype}.")
        values = np.asarray(item.as_numpy(), dtype=object).reshape(-1)
        _check_batch_size(len(values))
        encoded = []
        for index, value in enumerate(values):
            data = value if isinstance(value, bytes) else _b64decode(str(value), f"data[{index}]")
            encoded.append(check_image(data, index))
        return Batch(encoded=encoded)
    if item.datatype != "FP32":
        raise RequestError(f"{item.name} must have datatype FP32, got {item.datatype}.")
    try:
        pixels = np.asarray(item.as_numpy(), dtype=np.float32)
    except ValueError as error:
        raise RequestError(
            f"{item.name} data does not match its shape {item.shape}: {error}"
        ) from error
    expected = (size[0], size[1], 3)
    if pixels.ndim != 4 or pixels.shape[1:] != expected:
        raise RequestError(
            f"{item.name} has shape {list(pixels.shape)}; expected [N, {expected[0]}, "
            f"{expected[1]}, 3] (RGB at the model's size, values in [0, 255])."
        )
    _check_batch_size(len(pixels))
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 255:
        raise RequestError(f"{item.name} values must be finite and in [0, 255].")
    return Batch(pixels=pixels)


def check_image(data: bytes, index: int) -> bytes:
    """``data`` when it is a JPEG or PNG of acceptable size (header read only); else refuse it."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_IMAGE_BYTES:
        raise RequestError(
            f"Image {index} is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES}. Send a smaller "
            "JPEG (the model sees it resized anyway).",
            status=413,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                found, (width, height) = image.format, image.size
    except Image.DecompressionBombError as error:
        raise RequestError(f"Image {index} is a pixel bomb: {error}", status=413) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise RequestError(
            f"Image {index} is not an image ({len(data)} bytes starting {data[:12]!r}); send the "
            "bytes of a JPEG or PNG file, base64-encoded."
        ) from error
    if found not in FORMATS:
        raise RequestError(f"Image {index} is {found}; send a JPEG or PNG.")
    if width * height > MAX_PIXELS:
        raise RequestError(
            f"Image {index} is {width}x{height} = {width * height} pixels, over the limit of "
            f"{MAX_PIXELS} (a pixel bomb, or a photo to downscale first).",
            status=413,
        )
    return data


def _b64decode(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise RequestError(f"{where} is not valid base64 ({error}).") from error


def _check_batch_size(count: int) -> None:
    if not 1 <= count <= MAX_BATCH:
        raise RequestError(
            f"A request holds 1 to {MAX_BATCH} images, got {count}; split it.",
            status=413 if count > MAX_BATCH else 400,
        )


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"
