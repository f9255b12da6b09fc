"""Reading and checking prediction requests (KServe V1 and Open Inference V2) before the model runs.

Everything here is plain Python and Pillow (header reads only), so a bad request is refused with
a message naming what was wrong before any TensorFlow work starts:

- V1, the REST bodies TF Serving accepts for a one-input ``image_bytes`` signature:
  row format ``{"instances": [{"b64": "..."}, ...]}`` or with the input named
  ``{"instances": [{"image_bytes": {"b64": "..."}}, ...]}``; columnar format
  ``{"inputs": {"image_bytes": [{"b64": "..."}, ...]}}`` or ``{"inputs": [{"b64": "..."}, ...]}``
  (answered as TF Serving does: ``predictions`` for rows, ``outputs`` for columns).
- V2: one input ``image_bytes`` (``BYTES``, shape ``[N]``, base64 strings in JSON) or ``pixels``
  (``FP32``, shape ``[N, height, width, 3]`` in [0, 255]); the shape is checked against the data
  (non-negative, within the limits, the same element count) before anything is built from it.

Limits: ``MAX_BATCH`` images, ``MAX_IMAGE_BYTES`` and ``MAX_PIXELS`` per image and
``MAX_REQUEST_PIXELS`` per request (decoding cost follows the pixels the headers claim, not the
bytes sent: a 631-byte JPEG can claim 6000x6000).
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
MAX_REQUEST_PIXELS = 40_000_000  # the pixels one request may make the server decode, in all
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
    columnar: bool = False  # a V1 body in TF Serving's columnar format: answer with "outputs"


_V1_FORMATS = (
    '{"instances": [{"b64": "<base64 JPEG or PNG>"}, ...]}, '
    f'{{"instances": [{{"{signatures.BYTES_INPUT}": {{"b64": ...}}}}, ...]}} or '
    f'{{"inputs": {{"{signatures.BYTES_INPUT}": [{{"b64": ...}}, ...]}}}}'
)


def v1_batch(payload: Any) -> Batch:
    """The images of a V1 body in any of TF Serving's REST formats (module docstring), checked.

    ``payload`` is the decoded JSON, or the raw body when the client sent no JSON content type.
    """
    if isinstance(payload, bytes | str):
        try:
            payload = json.loads(payload)
        except ValueError as error:
            raise RequestError(f"The request body is not JSON ({error}).") from error
    if not isinstance(payload, dict) or ("instances" in payload) == ("inputs" in payload):
        raise RequestError(
            f"Expected a JSON object with exactly one of instances or inputs ({_V1_FORMATS}), "
            f"got {_describe(payload)}."
        )
    columnar = "inputs" in payload
    items = payload["inputs"] if columnar else payload["instances"]
    where = "inputs" if columnar else "instances"
    if columnar and isinstance(items, dict):
        if set(items) != {signatures.BYTES_INPUT}:
            raise RequestError(
                f"inputs names {sorted(items)[:5]}; this model has one input, "
                f"{signatures.BYTES_INPUT}."
            )
        items, where = items[signatures.BYTES_INPUT], f"inputs.{signatures.BYTES_INPUT}"
    if not isinstance(items, list) or not items:
        raise RequestError(
            f"{where} must be a non-empty list ({_V1_FORMATS}), got {_describe(items)}."
        )
    _check_batch_size(len(items))
    encoded = []
    budget = Budget()
    for index, item in enumerate(items):
        if not columnar and isinstance(item, dict) and set(item) == {signatures.BYTES_INPUT}:
            item = item[signatures.BYTES_INPUT]
        if not (isinstance(item, dict) and set(item) == {"b64"} and isinstance(item["b64"], str)):
            raise RequestError(
                f'{where}[{index}] is {_describe(item)}; expected {{"b64": "<base64 image>"}}'
                + ("" if columnar else f' or {{"{signatures.BYTES_INPUT}": {{"b64": ...}}}}')
                + "."
            )
        data = _b64decode(item["b64"], f"{where}[{index}].b64")
        encoded.append(budget.add(check_image(data, index), index))
    return Batch(encoded=encoded, columnar=columnar)


def v2_shape(item: Any, count: int | None = None) -> list[int]:
    """The input's shape when it is a list of non-negative ints matching the data, else refuse."""
    shape = getattr(item, "shape", None)
    if not isinstance(shape, list | tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) for d in shape
    ):
        raise RequestError(f"{item.name} shape must be a list of integers, got {_describe(shape)}.")
    if any(d < 0 for d in shape):
        raise RequestError(f"{item.name} shape {list(shape)} has a negative dimension.")
    elements = 1
    for dimension in shape:
        elements *= dimension
        if elements > MAX_BATCH * MAX_PIXELS * 3:
            raise RequestError(f"{item.name} shape {list(shape)[:6]} is too large.", status=413)
    data = getattr(item, "data", None)
    found = count if count is not None else (len(data) if isinstance(data, list) else None)
    if found is not None and found != elements:
        raise RequestError(
            f"{item.name} shape {list(shape)} holds {elements} elements but its data has {found}; "
            "make them agree."
        )
    return list(shape)


def v2_batch(request: Any, size: tuple[int, int]) -> Batch:
    """The images of a V2 ``InferRequest`` (one ``image_bytes`` or ``pixels`` input), checked."""
    inputs = list(getattr(request, "inputs", None) or [])
    names = [printable(str(getattr(item, "name", "?"))) for item in inputs]
    if len(inputs) != 1 or names[0] not in (signatures.BYTES_INPUT, signatures.PIXELS_INPUT):
        raise RequestError(
            f"Expected one input named {signatures.BYTES_INPUT} (BYTES) or "
            f"{signatures.PIXELS_INPUT} (FP32), got {names or 'none'}."
        )
    item = inputs[0]
    data = item.data if isinstance(getattr(item, "data", None), list) else None
    if data is None:
        raise RequestError(
            f"{item.name} must carry its data as a JSON list (base64 strings for BYTES)."
        )
    if item.name == signatures.BYTES_INPUT:
        if item.datatype != "BYTES":
            raise RequestError(f"{item.name} must have datatype BYTES, got {item.datatype}.")
        shape = v2_shape(item)
        if len(shape) != 1:
            raise RequestError(f"{item.name} must have shape [N], got {shape}.")
        _check_batch_size(len(data))
        encoded = []
        budget = Budget()
        for index, value in enumerate(data):
            if not isinstance(value, str | bytes):
                raise RequestError(
                    f"data[{index}] must be a base64 string, got {_describe(value)}."
                )
            text = value.decode("latin-1") if isinstance(value, bytes) else value
            encoded.append(
                budget.add(check_image(_b64decode(text, f"data[{index}]"), index), index)
            )
        return Batch(encoded=encoded)
    if item.datatype != "FP32":
        raise RequestError(f"{item.name} must have datatype FP32, got {item.datatype}.")
    shape = v2_shape(item)
    expected = (size[0], size[1], 3)
    if len(shape) != 4 or tuple(shape[1:]) != expected:
        raise RequestError(
            f"{item.name} has shape {shape}; expected [N, {expected[0]}, {expected[1]}, 3] "
            "(RGB at the model's size, values in [0, 255])."
        )
    _check_batch_size(shape[0])
    try:
        pixels = np.asarray(data, dtype=np.float32).reshape(shape)
    except (ValueError, TypeError) as error:
        raise RequestError(
            f"{item.name} data must be numbers matching its shape ({error})."
        ) from error
    if not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 255:
        raise RequestError(f"{item.name} values must be finite and in [0, 255].")
    return Batch(pixels=pixels)


class Budget:
    """The pixels one request has claimed so far; refuses the image that passes the budget."""

    def __init__(self, limit: int = MAX_REQUEST_PIXELS) -> None:
        self.limit = limit
        self.pixels = 0

    def add(self, data: bytes, index: int) -> bytes:
        """``data`` after adding the pixels its header claims; 413 past the request's budget."""
        from PIL import Image

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
        self.pixels += width * height
        if self.pixels > self.limit:
            raise RequestError(
                f"Image {index} brings this request to {self.pixels} pixels, over the budget of "
                f"{self.limit} per request (each image is decoded at its full size first). Send "
                "fewer images per request, or downscale them.",
                status=413,
            )
        return data


def printable(text: str, limit: int = 200) -> str:
    """``text`` with control characters escaped (for messages and logs)."""
    from catsdogs.components.serve import limits

    return limits.printable(text, limit)


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
