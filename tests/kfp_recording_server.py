"""A small in-memory Kubeflow Pipelines v2beta1 REST server on 127.0.0.1 that records every call.

It implements the paths ``kfp.Client`` uses for submit and schedule (healthz, pipelines
list/upload/upload_version/versions, experiments list/create, runs create, recurringruns
create/list/delete) with the real request and response shapes, keeps state between calls (so a
second upload of the same name finds the pipeline), and records each call's method, path, query,
JSON body and multipart file for the tests to assert on.
"""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import itertools
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API = "/apis/v2beta1"


@dataclasses.dataclass
class Call:
    """One recorded request."""

    method: str
    path: str
    query: dict[str, str]
    body: Any = None
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    authorization: str = ""


@dataclasses.dataclass
class State:
    """The server's memory."""

    calls: list[Call] = dataclasses.field(default_factory=list)
    pipelines: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    versions: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    experiments: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    recurring_runs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    ids: Any = dataclasses.field(default_factory=lambda: itertools.count(1))

    def new_id(self, kind: str) -> str:
        return f"{kind}-{next(self.ids)}"

    def calls_to(self, method: str, path: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path == API + path]


def _created(n: int) -> str:
    return f"2026-01-01T00:{n // 60:02d}:{n % 60:02d}Z"


def _filter_name(query: dict[str, str]) -> str | None:
    if "filter" not in query:
        return None
    for predicate in json.loads(query["filter"]).get("predicates", []):
        if predicate.get("key") in ("display_name", "name"):
            return str(predicate.get("stringValue") or predicate.get("string_value"))
    return None


class _Handler(BaseHTTPRequestHandler):
    state: State

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> Call:
        parsed = urllib.parse.urlparse(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        call = Call(self.command, parsed.path, query)
        call.authorization = self.headers.get("Authorization", "")
        kind = self.headers.get("Content-Type", "")
        if kind.startswith("multipart/form-data"):
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
                b"Content-Type: " + kind.encode() + b"\r\n\r\n" + raw
            )
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                call.files[str(name)] = part.get_payload(decode=True)
        elif raw:
            call.body = json.loads(raw)
        self.state.calls.append(call)
        return call

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        call = self._record()
        s = self.state
        path = call.path.removeprefix(API)
        if path == "/healthz":
            return self._reply(200, {"multi_user": False})
        if path == "/pipelines":
            name = _filter_name(call.query)
            found = [p for p in s.pipelines.values() if name is None or p["display_name"] == name]
            return self._reply(200, {"pipelines": found, "total_size": len(found)})
        if path.startswith("/pipelines/") and path.endswith("/versions"):
            pipeline_id = path.split("/")[2]
            versions = sorted(s.versions.get(pipeline_id, []), key=lambda v: v["created_at"])
            if call.query.get("sort_by", "").endswith("desc"):
                versions.reverse()
            size = int(call.query.get("page_size") or 100)
            return self._reply(200, {"pipeline_versions": versions[:size]})
        if path == "/experiments":
            name = _filter_name(call.query)
            found = [e for e in s.experiments.values() if name is None or e["display_name"] == name]
            return self._reply(200, {"experiments": found, "total_size": len(found)})
        if path == "/recurringruns":
            return self._reply(200, {"recurringRuns": list(s.recurring_runs.values())})
        return self._reply(404, {"error": f"not found: {call.path}", "code": 5})

    def do_POST(self) -> None:  # noqa: N802
        call = self._record()
        s = self.state
        path = call.path.removeprefix(API)
        n = len(s.calls)
        if path == "/pipelines/upload":
            name = call.query["name"]
            if any(p["display_name"] == name for p in s.pipelines.values()):
                return self._reply(409, {"error": f"pipeline {name} exists", "code": 6})
            pipeline = {"pipeline_id": s.new_id("pipeline"), "display_name": name}
            pipeline["created_at"] = _created(n)
            s.pipelines[pipeline["pipeline_id"]] = pipeline
            s.versions[pipeline["pipeline_id"]] = [
                {
                    "pipeline_id": pipeline["pipeline_id"],
                    "pipeline_version_id": s.new_id("version"),
                    "display_name": name,
                    "created_at": _created(n),
                }
            ]
            return self._reply(200, pipeline)
        if path == "/pipelines/upload_version":
            pipeline_id = call.query["pipelineid"]
            if pipeline_id not in s.pipelines:
                return self._reply(404, {"error": "no such pipeline", "code": 5})
            version = {
                "pipeline_id": pipeline_id,
                "pipeline_version_id": s.new_id("version"),
                "display_name": call.query["name"],
                "created_at": _created(n),
            }
            s.versions[pipeline_id].append(version)
            return self._reply(200, version)
        if path == "/experiments":
            experiment = dict(call.body, experiment_id=s.new_id("experiment"))
            s.experiments[experiment["experiment_id"]] = experiment
            return self._reply(200, experiment)
        if path == "/runs":
            run = dict(call.body, run_id=s.new_id("run"), state="PENDING")
            s.runs[run["run_id"]] = run
            return self._reply(200, run)
        if path == "/recurringruns":
            recurring = dict(call.body, recurring_run_id=s.new_id("recurring"), status="ENABLED")
            s.recurring_runs[recurring["recurring_run_id"]] = recurring
            return self._reply(200, recurring)
        return self._reply(404, {"error": f"not found: {call.path}", "code": 5})

    def do_DELETE(self) -> None:  # noqa: N802
        call = self._record()
        path = call.path.removeprefix(API)
        if path.startswith("/recurringruns/"):
            recurring_run_id = path.split("/")[2]
            if self.state.recurring_runs.pop(recurring_run_id, None) is None:
                return self._reply(404, {"error": "no such recurring run", "code": 5})
            return self._reply(200, {})
        return self._reply(404, {"error": f"not found: {call.path}", "code": 5})


class RecordingServer:
    """Start with ``with RecordingServer() as server:``; ``server.url``, ``server.state``."""

    def __init__(self) -> None:
        self.state = State()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
