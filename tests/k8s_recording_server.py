"""A small in-memory Kubernetes API for KServe InferenceServices on 127.0.0.1 that records every call.

It implements what ``deploy.apply`` uses, with the real API's rules for server-side apply:
``PATCH /apis/serving.kserve.io/v1beta1/namespaces/NS/inferenceservices/NAME`` must carry
``Content-Type: application/apply-patch+yaml`` and a ``fieldManager`` query parameter (the API
answers 415 / 422 otherwise), the body's apiVersion, kind, name and namespace must match the path
(400), the first apply creates the object (201) and later ones update it (200, ``generation``
bumped only when the spec changes). ``GET`` of the same path reads it back (404 when absent).
Every call is recorded (method, path, query, content type, body, authorization).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.loopback_server import LoopbackServer

PATH = re.compile(
    r"^/apis/serving\.kserve\.io/v1beta1/namespaces/(?P<namespace>[^/]+)/inferenceservices/(?P<name>[^/]+)$"
)


@dataclasses.dataclass
class Call:
    """One recorded request."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any = None
    authorization: str = ""
    status: int = 0


@dataclasses.dataclass
class State:
    """The server's memory: the calls and the stored objects by (namespace, name)."""

    calls: list[Call] = dataclasses.field(default_factory=list)
    objects: dict[tuple[str, str], dict[str, Any]] = dataclasses.field(default_factory=dict)
    uid: int = 0


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


class _Handler(BaseHTTPRequestHandler):
    state: State
    lock: threading.Lock

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _reply(self, call: Call, status: int, payload: Any) -> None:
        call.status = status
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _call(self) -> tuple[Call, re.Match[str] | None]:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode(errors="replace")
        call = Call(
            method=self.command,
            path=url.path,
            query=dict(urllib.parse.parse_qsl(url.query)),
            content_type=self.headers.get("Content-Type", ""),
            body=body,
            authorization=self.headers.get("Authorization", ""),
        )
        self.state.calls.append(call)
        return call, PATH.match(url.path)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        call, match = self._call()
        with self.lock:
            found = match and self.state.objects.get((match["namespace"], match["name"]))
        if not found:
            self._reply(call, 404, _status(404, "NotFound", f"{call.path} not found"))
            return
        self._reply(call, 200, found)

    def do_PATCH(self) -> None:  # noqa: N802
        call, match = self._call()
        if not match:
            self._reply(call, 404, _status(404, "NotFound", f"no route for {call.path}"))
            return
        if call.content_type != "application/apply-patch+yaml":
            self._reply(
                call, 415, _status(415, "UnsupportedMediaType", f"{call.content_type} not applied")
            )
            return
        if not call.query.get("fieldManager"):
            message = "fieldManager is required for apply requests"
            self._reply(call, 422, _status(422, "Invalid", message))
            return
        body = call.body if isinstance(call.body, dict) else {}
        metadata = body.get("metadata") or {}
        problems = [
            f"{field} {got!r} != {want!r}"
            for field, got, want in (
                ("apiVersion", body.get("apiVersion"), "serving.kserve.io/v1beta1"),
                ("kind", body.get("kind"), "InferenceService"),
                ("metadata.name", metadata.get("name"), match["name"]),
                (
                    "metadata.namespace",
                    metadata.get("namespace", match["namespace"]),
                    match["namespace"],
                ),
            )
            if got != want
        ]
        if problems:
            self._reply(call, 400, _status(400, "BadRequest", "; ".join(problems)))
            return
        key = (match["namespace"], match["name"])
        with self.lock:
            existing = self.state.objects.get(key)
            stored = copy.deepcopy(body)
            if existing is None:
                self.state.uid += 1
                stored["metadata"].update(uid=f"uid-{self.state.uid}", generation=1)
                status = 201
            else:
                changed = existing.get("spec") != body.get("spec")
                generation = existing["metadata"]["generation"] + (1 if changed else 0)
                stored["metadata"].update(uid=existing["metadata"]["uid"], generation=generation)
                status = 200
            stored["metadata"]["managedFields"] = [
                {"manager": call.query["fieldManager"], "operation": "Apply"}
            ]
            self.state.objects[key] = stored
        self._reply(call, status, stored)

    do_POST = do_PUT = do_DELETE = lambda self: self._reply(  # noqa: E731
        self._call()[0], 405, _status(405, "MethodNotAllowed", "only GET and apply PATCH here")
    )


class RecordingServer(LoopbackServer):
    """Start with ``with RecordingServer() as server:``; ``server.url``, ``server.state``."""

    def __init__(self) -> None:
        self.state = State()
        super().__init__(
            type("Handler", (_Handler,), {"state": self.state, "lock": threading.Lock()})
        )
