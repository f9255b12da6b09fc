"""The KServe model that answers V1 and V2 predictions from an exported SavedModel version folder.

Import it through ``server.import_kserve()``: the ``kserve`` package parses ``sys.argv`` when
it is imported.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import kserve
from catsdogs.components.common.errors import ModelError
from catsdogs.components.serve import export, limits, payloads, signatures
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady, UnsupportedProtocol
from kserve.protocol.rest.server import RESTServer

IMAGES_HEADER = "x-catsdogs-images"  # how many images a response answers (for the request log)
logger = logging.getLogger("catsdogs.serve")


class CatsdogsModel(kserve.Model):
    """One exported version: ``serving_default`` for encoded images, ``serving_pixels`` for pixels."""

    def __init__(self, name: str, version_dir: Path) -> None:
        super().__init__(name, return_response_headers=True)
        self.version_dir = version_dir
        self.classes: tuple[str, ...] = ("cat", "dog")
        self.size: tuple[int, int] = (0, 0)
        self._loaded: Any = None  # keeps the signatures' variables alive
        self._by_bytes: Any = None
        self._by_pixels: Any = None

    def load(self) -> bool:
        """Load the SavedModel and its export record; the model is ready afterwards."""
        import tensorflow as tf

        record_file = Path(self.version_dir, export.RECORD_FILE)
        if not record_file.is_file():
            raise ModelError(
                f"{self.version_dir} has no {export.RECORD_FILE}: it was not written by "
                "`catsdogs export`. Export the model with it and serve that folder."
            )
        record = json.loads(record_file.read_text())
        self.classes = tuple(record["classes"])
        self.size = (int(record["image_size"][0]), int(record["image_size"][1]))
        signatures.quiet_optimizer()
        loaded = tf.saved_model.load(str(self.version_dir))
        self._loaded = loaded
        self._by_bytes = loaded.signatures[signatures.DEFAULT_SIGNATURE]
        self._by_pixels = loaded.signatures[signatures.PIXELS_SIGNATURE]
        self.ready = True
        return self.ready

    async def predict(
        self,
        payload: Any,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        """Answer a V1 dict or a V2 ``InferRequest``; refused requests become 400/413 errors."""
        is_v2 = isinstance(payload, kserve.InferRequest)
        try:
            batch = payloads.v2_batch(payload, self.size) if is_v2 else payloads.v1_batch(payload)
            loop = asyncio.get_running_loop()
            positive, labels = await loop.run_in_executor(None, self._run, batch)
        except payloads.RequestError:
            raise  # answered by QuietRESTServer's handler with its status, in one log line
        if response_headers is not None:
            response_headers[IMAGES_HEADER] = str(len(positive))
        output = signatures.probability_output(self.classes)
        if not is_v2 and batch.columnar:
            return {"outputs": {output: positive, signatures.LABEL_OUTPUT: labels}}
        if not is_v2:
            return {
                "predictions": [
                    {output: p, signatures.LABEL_OUTPUT: label}
                    for p, label in zip(positive, labels, strict=True)
                ]
            }
        return kserve.InferResponse(
            response_id=getattr(payload, "id", None) or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=[
                kserve.InferOutput(output, [len(positive)], "FP32", positive),
                kserve.InferOutput(signatures.LABEL_OUTPUT, [len(labels)], "BYTES", labels),
            ],
        )

    def get_input_types(self) -> list[dict[str, Any]]:
        """V2 model metadata: the two inputs (one per request) of the exported signatures."""
        height, width = self.size
        return [
            {"name": signatures.BYTES_INPUT, "datatype": "BYTES", "shape": [-1]},
            {"name": signatures.PIXELS_INPUT, "datatype": "FP32", "shape": [-1, height, width, 3]},
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        """V2 model metadata: P(positive class) and the label, one per image."""
        return [
            {
                "name": signatures.probability_output(self.classes),
                "datatype": "FP32",
                "shape": [-1],
            },
            {"name": signatures.LABEL_OUTPUT, "datatype": "BYTES", "shape": [-1]},
        ]

    def _run(self, batch: payloads.Batch) -> tuple[list[float], list[str]]:
        import tensorflow as tf

        try:
            if batch.encoded is not None:
                result = self._by_bytes(**{signatures.BYTES_INPUT: tf.constant(batch.encoded)})
            else:
                result = self._by_pixels(**{signatures.PIXELS_INPUT: tf.constant(batch.pixels)})
        except tf.errors.InvalidArgumentError as error:
            first_line = (error.message or "").strip().splitlines()[:1]
            raise payloads.RequestError(
                f"An image could not be decoded ({' '.join(first_line)}); it is probably "
                "truncated or corrupt. Re-encode it as JPEG or PNG."
            ) from error
        positive = [float(p) for p in result[signatures.probability_output(self.classes)].numpy()]
        labels = [label.decode() for label in result[signatures.LABEL_OUTPUT].numpy()]
        return positive, labels


class QuietRESTServer(RESTServer):
    """KServe's REST server, answering refused requests with one log line and no traceback.

    KServe's own handlers (kserve ``errors.py``) log every refused request with its traceback
    (``logger.error("Exception:", exc_info=exc)``); these keep the statuses and log one line,
    with control characters escaped. Other exceptions (our bugs) keep KServe's handler.
    """

    def _add_exception_handlers(self, app: Any) -> None:
        super()._add_exception_handlers(app)
        for kind, status in (
            (InvalidInput, 400),
            (RequestValidationError, 400),
            (ModelNotFound, 404),
            (ModelNotReady, 503),
            (NotImplementedError, 501),
            (UnsupportedProtocol, 501),
        ):
            app.add_exception_handler(kind, _refusal(status))
        app.add_exception_handler(payloads.RequestError, _refusal(0))


def _refusal(status: int) -> Any:
    async def handler(request: Any, error: Exception) -> Any:
        code = status or int(getattr(error, "status", 400))
        message = limits.printable(" ".join(str(error).split()), 300)
        if isinstance(error, RequestValidationError):
            message = "The request body does not match the protocol: " + limits.printable(
                "; ".join(
                    f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}"
                    for e in error.errors()[:3]
                ),
                300,
            )
        logger.warning(
            "refused %s %s: %d %s",
            request.method,
            limits.printable(request.url.path),
            code,
            message,
        )
        return JSONResponse(status_code=code, content={"error": message})

    return handler
