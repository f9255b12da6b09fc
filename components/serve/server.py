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
from catsdogs.components.serve import export, limits, payloads

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


def _numbered_child(uri: str) -> str | None:
    """The highest numbered child of ``uri`` holding a saved_model.pb (TF Serving's choice)."""
    if not storage.is_dir(uri):
        return None
    names = set(storage.list_files(uri))
    numbers = [
        int(top)
        for top in {name.split("/")[0] for name in names}
        if top.isdigit() and f"{top}/{export.SAVED_MODEL_FILE}" in names
    ]
    return storage.join(uri, str(max(numbers))) if numbers else None


@contextlib.contextmanager
def version_dir(model_uri: str) -> Iterator[Path]:
    """A local SavedModel folder (saved_model.pb in it) for ``model_uri``.

    ``model_uri`` may be, local or gs://:

    - a SavedModel folder (``saved_model.pb``);
    - a version prefix (``SERVING_URI/v0007``, or ``/mnt/models`` after KServe's storage
      initializer copied one there): its highest numbered child with a ``saved_model.pb``;
    - a SERVING_URI: its highest complete version;
    - a model folder, a champion location or a champion version (``model_dir.resolve``): exported
      to a temporary SERVING_URI first.

    Raises:
        ModelError: Nothing servable at ``model_uri``.
    """
    if not str(model_uri).strip():
        raise ModelError(
            f"The model location is empty ({str(model_uri)!r}). Pass --model a SERVING_URI, a "
            "version prefix, a model folder or a champion location."
        )
    found = model_uri if storage.exists(storage.join(model_uri, export.SAVED_MODEL_FILE)) else None
    found = found or _numbered_child(model_uri)
    if found is None:
        versions = export.existing_versions(model_uri).complete
        if versions:
            found = storage.join(export.version_uri(model_uri, max(versions)), export.MODEL_VERSION)
    if found is not None:
        with storage.local_dir(found) as local:
            yield local
        return
    if not (
        storage.exists(storage.join(model_uri, model_dir.MODEL_FILE))
        or storage.exists(storage.join(model_uri, model_dir.CHAMPION_FILE))
    ):
        incomplete = export.existing_versions(model_uri).incomplete
        hint = (
            f" (versions {sorted(incomplete)} have no {export.SAVED_MODEL_FILE}: unfinished "
            "exports; run catsdogs export again to finish them)"
            if incomplete
            else ""
        )
        raise ModelError(
            f"Nothing to serve at {model_uri}{hint}: expected a SERVING_URI with complete "
            f"versions (catsdogs export), a version prefix or folder with "
            f"{export.SAVED_MODEL_FILE}, a model folder with {model_dir.MODEL_FILE} or a champion "
            "location (champion.json)."
        )
    with tempdirs.temporary("serve") as tmp:
        result = export.export(model_uri, str(tmp))
        yield Path(result.uri, export.MODEL_VERSION)


def serve(model_uri: str, port: int = DEFAULT_PORT, host: str = HOST) -> None:
    """Serve ``model_uri`` (see ``version_dir``) on ``host``:``port`` until interrupted."""
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
        rest.config.host = host
        app.add_middleware(limits.BodyLimit, limit=payloads.MAX_REQUEST_BYTES)
        app.middleware("http")(_request_log(kserve_model.IMAGES_HEADER))
        warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")  # kserve's
        for name in ("uvicorn.access", "kserve.trace"):  # our middleware logs each request
            logging.getLogger(name).disabled = True
        logger.info(
            "Serving %s (%s) on http://%s:%d/v1/models/%s:predict and /v2/models/%s/infer",
            local,
            model_uri,
            host,
            port,
            MODEL_NAME,
            MODEL_NAME,
        )
        rest.run()


def _request_log(images_header: str) -> Any:
    """A middleware that logs one line per request (control characters in the path escaped)."""
    counter = itertools.count(1)

    async def middleware(request: Any, call_next: Any) -> Any:
        number, start = next(counter), time.perf_counter()
        response = await call_next(request)
        logger.info(
            "request %d: %s %s -> %d, %s images, %.1f ms",
            number,
            limits.printable(request.method),
            limits.printable(request.url.path),
            response.status_code,
            limits.printable(response.headers.get(images_header, "0")),
            (time.perf_counter() - start) * 1000,
        )
        return response

    return middleware
