"""``catsdogs serve``: KServe's model server on 127.0.0.1, answering the V1 and V2 protocols.

The server is the ``kserve`` package's: its FastAPI app, data plane, model registry and REST
server (uvicorn), with the routes a KServe predictor has:

    POST /v1/models/catsdogs:predict      {"instances": [{"b64": "..."}]}  (TF Serving's REST body)
    POST /v2/models/catsdogs/infer        Open Inference Protocol (see ``payloads``)
    GET  /v2/health/live, /v2/health/ready, /v1/models/catsdogs, /v2/models/catsdogs/ready

Two things are set around it: the REST server listens on 127.0.0.1 (``ModelServer.start`` binds
0.0.0.0 and opens a gRPC port; a local check should not be reachable from the network), and one
middleware refuses bodies over ``payloads.MAX_REQUEST_BYTES`` and logs one line per request
(number, method, path, status, images, latency). The model served is always a SavedModel
version folder: a model folder or champion is exported to a temporary one first, so the local
server runs exactly what KServe's TensorFlow runtime would.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from catsdogs.components.common import model_dir, storage, tempdirs
from catsdogs.components.common.errors import ModelError
from catsdogs.components.serve import export, payloads

MODEL_NAME = "catsdogs"
HOST = "127.0.0.1"
DEFAULT_PORT = 8080
logger = logging.getLogger("catsdogs.serve")


def import_kserve() -> Any:
    """Import ``kserve`` and our model on it; kserve parses ``sys.argv`` on import, so hide it."""
    saved, sys.argv = sys.argv, sys.argv[:1]
    try:
        from catsdogs.components.serve import kserve_model
    finally:
        sys.argv = saved
    return kserve_model


@contextlib.contextmanager
def version_dir(model_uri: str) -> Iterator[Path]:
    """A local SavedModel version folder for ``model_uri``.

    ``model_uri`` may be a version folder (saved_model.pb), a SERVING_URI (its highest numbered
    version, as TF Serving picks), a model folder (model.keras) or a champion location
    (champion.json); the last two are exported to a temporary SERVING_URI first.

    Raises:
        ModelError: Nothing servable at ``model_uri``.
    """
    if storage.exists(storage.join(model_uri, export.SAVED_MODEL_FILE)):
        with storage.local_dir(model_uri) as local:
            yield local
        return
    versions = export.existing_versions(model_uri)
    if versions:
        with storage.local_dir(storage.join(model_uri, str(max(versions)))) as local:
            yield local
        return
    source, _ = export.resolve_source(model_uri)
    if not storage.exists(storage.join(source, model_dir.MODEL_FILE)):
        raise ModelError(
            f"Nothing to serve at {model_uri}: expected a SERVING_URI with numbered versions "
            f"(catsdogs export), a version folder with {export.SAVED_MODEL_FILE}, a model folder "
            f"with {model_dir.MODEL_FILE} or a champion location (champion.json)."
        )
    with tempdirs.temporary("serve") as tmp:
        result = export.export(model_uri, str(tmp))
        yield Path(result.uri)


def serve(model_uri: str, port: int = DEFAULT_PORT) -> None:
    """Serve ``model_uri`` (see ``version_dir``) on 127.0.0.1:``port`` until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    kserve_model = import_kserve()
    import kserve
    from kserve.model_server import app

    with version_dir(model_uri) as local:
        model = kserve_model.CatsdogsModel(MODEL_NAME, local)
        model.load()
        server = kserve.ModelServer(
            http_port=port, enable_grpc=False, workers=1, enable_latency_logging=False
        )
        server.register_model(model)
        model.start()
        rest = kserve_model.QuietRESTServer(
            "kserve.model_server:app",
            server.dataplane,
            server.model_repository_extension,
            port,
        )
        rest.config.host = HOST
        app.middleware("http")(_request_log(kserve_model.IMAGES_HEADER))
        warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")  # kserve's
        for name in ("uvicorn.access", "kserve.trace"):  # our middleware logs each request
            logging.getLogger(name).disabled = True
        logger.info(
            "Serving %s (%s) on http://%s:%d/v1/models/%s:predict and /v2/models/%s/infer",
            local,
            model_uri,
            HOST,
            port,
            MODEL_NAME,
            MODEL_NAME,
        )
        rest.run()


def _request_log(images_header: str) -> Any:
    """A middleware: refuse oversized bodies (413) and log one line per request."""
    from fastapi.responses import JSONResponse

    counter = itertools.count(1)

    async def middleware(request: Any, call_next: Any) -> Any:
        number, start = next(counter), time.perf_counter()
        length = request.headers.get("content-length", "0")
        if not length.isdigit() or int(length) > payloads.MAX_REQUEST_BYTES:
            response = JSONResponse(
                status_code=413,
                content={
                    "error": f"Request body of {length} bytes; the limit is "
                    f"{payloads.MAX_REQUEST_BYTES}. Send fewer or smaller images per request."
                },
            )
        else:
            response = await call_next(request)
        logger.info(
            "request %d: %s %s -> %d, %s images, %.1f ms",
            number,
            request.method,
            request.url.path,
            response.status_code,
            response.headers.get(images_header, "0"),
            (time.perf_counter() - start) * 1000,
        )
        return response

    return middleware
