"""A small in-memory Kubeflow Pipelines v2beta1 REST server on 127.0.0.1 that records every call.

It implements the paths ``kfp.Client`` uses for submit, schedule and retry (healthz, pipelines
list/upload/upload_version/versions, experiments list/create, runs create/get and
``runs/{run_id}:retry``, recurringruns create/list/delete) with the real request and response shapes, keeps state between calls (so a
second upload of the same name finds the pipeline), and records each call's method, path, query,
JSON body and multipart file for the tests to assert on.

It refuses what the KFP 2.17 API server refuses (backend/src/apiserver), with its messages:

- a pipeline spec that ``template.NewV2SpecTemplate`` rejects (not YAML, no spec, schema version
  other than 2.1.0, empty or invalid ``pipelineInfo.name``, no root) and a name that
  ``common.ValidatePipelineName`` rejects (``^[a-z0-9][a-z0-9-]{0,127}$``);
- run and recurring-run parameters that ``validatePipelineJobInputs`` rejects: missing without a
  default, of the wrong JSON type, or unknown to the pipeline's root inputs;
- a retry (``RetryRun``, ``POST /apis/v2beta1/runs/{run_id}:retry`` with no body) of an unknown
  run, or of one that has not ended FAILED or CANCELED (``Workflow.GenerateRetryExecution``:
  "Workflow must be Failed/Error to retry"); an accepted retry puts the run back to RUNNING;
- empty run/recurring-run names, a ``max_concurrency`` outside 1-10 and a cron that robfig/cron
  v1's ``cron.Parse`` rejects (5 or 6 fields seconds first, descriptors, ``@every``);
- in multi-user mode, any call without a namespace (experiments, lists, and pipelines as with
  ``REQUIRE_NAMESPACE_FOR_PIPELINES=true``); runs and recurring runs take their experiment's. In
  single-user mode namespaces are dropped, as ``ReplaceNamespace`` does.

Healthz reports ``multi_user`` and ``tag_name`` (the version; the real server's ``TAG_NAME``).
Requests through the Kubernetes API proxy path that ``kfp.Client`` builds from a kubeconfig
(``/api/v1/namespaces/<ns>/services/ml-pipeline:http/proxy/...``) are served too, and each call
records the ``<ns>`` it went through.
"""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import itertools
import json
import re
import urllib.parse
from http.server import BaseHTTPRequestHandler
from typing import Any

import yaml

from tests.loopback_server import LoopbackServer

API = "/apis/v2beta1"
_PROXY = re.compile(r"^/api/v1/namespaces/([^/]+)/services/ml-pipeline:http/proxy/*(/.*)$")
_PIPELINE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")
_SPEC_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "STRING": (str,),
    "NUMBER_INTEGER": (int, float),
    "NUMBER_DOUBLE": (int, float),
    "BOOLEAN": (bool,),
    "LIST": (list,),
    "STRUCT": (dict,),
}
_NUMBER = "double or integer, but the parameter value is not of number value type"
_TYPE_WORDS = {
    "STRING": "string, but the input parameter is not of string value type",
    "NUMBER_INTEGER": _NUMBER,
    "NUMBER_DOUBLE": _NUMBER,
    "BOOLEAN": "bool, but the input parameter is not of bool value type",
    "LIST": "list, but the input parameter is not of list value type",
    "STRUCT": "struct, but the input parameter is not of struct value type",
}
# robfig/cron v1: (low, high, names) per field, seconds first.
_CRON_FIELDS = [
    (0, 59, {}),
    (0, 59, {}),
    (0, 23, {}),
    (1, 31, {}),
    (
        1,
        12,
        {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())},
    ),
    (0, 6, {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}),
]
_CRON_DESCRIPTORS = {
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
}
_GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")


class Refused(Exception):
    """A request the real server refuses: HTTP status and its message."""

    def __init__(self, status: int, message: str, upload: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.upload = upload


def cron_error(spec: str) -> str | None:
    """robfig/cron v1.2.0 ``cron.Parse``'s error for ``spec``, or None when it parses."""
    if not spec:
        return "Empty spec string"
    if spec.startswith("@"):
        if spec in _CRON_DESCRIPTORS:
            return None
        if spec.startswith("@every "):
            rest = spec[len("@every ") :]
            while rest:
                match = _GO_DURATION.match(rest)
                if not match:
                    return f"Failed to parse duration {spec}: time: invalid duration {rest}"
                rest = rest[match.end() :]
            return None if spec[len("@every ") :] else f"Failed to parse duration {spec}"
        return f"Unrecognized descriptor: {spec}"
    fields = spec.split()
    if not 5 <= len(fields) <= 6:
        return f"Expected 5 to 6 fields, found {len(fields)}: {spec}"
    for text, (low, high, names) in zip(fields, _CRON_FIELDS, strict=False):
        for part in text.split(","):
            error = _cron_range_error(part, low, high, names)
            if error:
                return error
    return None


def _cron_range_error(expr: str, low: int, high: int, names: dict[str, int]) -> str | None:
    range_and_step = expr.split("/")
    if len(range_and_step) > 2:
        return f"Too many slashes: {expr}"
    low_and_high = range_and_step[0].split("-")
    if len(low_and_high) > 2:
        return f"Too many hyphens: {expr}"

    def number(text: str) -> int | str:
        if text.lower() in names:
            return names[text.lower()]
        if not re.fullmatch(r"[+-]?[0-9]+", text):
            return (
                f'Failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax'
            )
        value = int(text)
        return f"Negative number ({value}) not allowed: {text}" if value < 0 else value

    if low_and_high[0] in ("*", "?"):
        start, end = low, high
    else:
        first = number(low_and_high[0])
        if isinstance(first, str):
            return first
        start = end = first
        if len(low_and_high) == 2:
            last = number(low_and_high[1])
            if isinstance(last, str):
                return last
            end = last
    if len(range_and_step) == 2:
        step = number(range_and_step[1])
        if isinstance(step, str):
            return step
        if step == 0:
            return f"Step of range should be a positive number: {expr}"
        if len(low_and_high) == 1 and low_and_high[0] not in ("*", "?"):
            end = high
    if start < low:
        return f"Beginning of range ({start}) below minimum ({low}): {expr}"
    if end > high:
        return f"End of range ({end}) above maximum ({high}): {expr}"
    if start > end:
        return f"Beginning of range ({start}) beyond end of range ({end}): {expr}"
    return None


def check_pipeline_file(data: bytes) -> dict[str, Any]:
    """The root inputs of a pipeline file the server accepts; ``Refused`` as the server would."""
    try:
        documents = [d for d in yaml.safe_load_all(data) if d is not None]
    except yaml.YAMLError as error:
        message = f"Invalid pipeline spec: unable to decode yaml document: {error}"
        raise Refused(400, message, True) from error
    specs = [d for d in documents if isinstance(d, dict) and "pipelineInfo" in d and "root" in d]
    if len(specs) != 1:
        found = "multiple pipeline specs provided" if specs else "no pipeline spec is provided"
        raise Refused(400, f"Invalid pipeline spec: {found}", True)
    spec = specs[0]
    if spec.get("schemaVersion") != "2.1.0":
        raise Refused(
            400,
            "Invalid pipeline spec: KFP only supports schema version 2.1.0, but the pipeline "
            f"spec has version {spec.get('schemaVersion', '')}",
            True,
        )
    name = str((spec.get("pipelineInfo") or {}).get("name") or "")
    if not name:
        raise Refused(400, "Invalid pipeline spec: invalid v2 pipeline spec: name is empty", True)
    if not _SPEC_NAME.search(name):
        raise Refused(
            400,
            "Invalid pipeline spec: invalid v2 pipeline spec: name should consist of lower case "
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
            "character",
            True,
        )
    if len(name) > 128:
        raise Refused(400, "pipeline's name must contain no more than 128 characters", True)
    if not _PIPELINE_NAME.match(name):
        raise Refused(
            400,
            "pipeline's name must contain only lowercase alphanumeric characters or '-' and must "
            "start with alphanumeric characters",
            True,
        )
    return dict((spec["root"].get("inputDefinitions") or {}).get("parameters") or {})


def parameter_error(inputs: dict[str, Any], given: dict[str, Any]) -> str | None:
    """``validatePipelineJobInputs``'s refusal of the run parameters ``given``, or None."""
    for name, spec in inputs.items():
        if name not in given:
            if not spec.get("isOptional") and "defaultValue" not in spec:
                return (
                    f"parameter {name} is not optional, yet has neither default value nor user "
                    "provided value"
                )
            continue
        kind = spec.get("parameterType", "")
        value = given[name]
        accepted = _JSON_TYPES.get(kind)
        if accepted is None:
            return f"input parameter {name} requires type unknown"
        if not isinstance(value, accepted) or (bool not in accepted and isinstance(value, bool)):
            return f"input parameter {name} requires type {_TYPE_WORDS[kind]}"
    extra = [name for name in given if name not in inputs]
    if extra:
        return f"parameter(s) provided are not required by pipeline: {', '.join(extra)}"
    return None


@dataclasses.dataclass
class Call:
    """One recorded request."""

    method: str
    path: str
    query: dict[str, str]
    body: Any = None
    files: dict[str, bytes] = dataclasses.field(default_factory=dict)
    authorization: str = ""
    proxy_namespace: str = ""  # the namespace in the kube-proxy path, when it came through one


@dataclasses.dataclass
class State:
    """The server's memory."""

    multi_user: bool = False
    version: str = "2.17.0"
    calls: list[Call] = dataclasses.field(default_factory=list)
    pipelines: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    versions: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)  # by version id
    experiments: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    recurring_runs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    ids: Any = dataclasses.field(default_factory=lambda: itertools.count(1))

    def new_id(self, kind: str) -> str:
        return f"{kind}-{next(self.ids)}"

    def calls_to(self, method: str, path: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path == API + path]

    def namespace(self, given: str | None, what: str) -> str:
        """The namespace a call acts in ('' in single-user mode); refused when missing."""
        if not self.multi_user:
            return ""
        if not given:
            raise Refused(400, what)
        return given

    def version_inputs(self, body: dict[str, Any]) -> dict[str, Any]:
        reference = body.get("pipeline_version_reference") or {}
        version_id = reference.get("pipeline_version_id", "")
        if version_id not in self.inputs:
            raise Refused(404, f"Failed to get a pipeline version: {version_id} not found")
        return self.inputs[version_id]

    def experiment_namespace(self, body: dict[str, Any], what: str) -> str:
        experiment = self.experiments.get(body.get("experiment_id", ""))
        if experiment is None:
            raise Refused(404, f"Failed to get experiment {body.get('experiment_id')}: not found")
        return self.namespace(experiment.get("namespace"), what)


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

    def _refuse(self, refused: Refused) -> None:
        if refused.upload:  # the upload handlers write apiv1beta1.Error
            body: dict[str, Any] = {
                "error_message": refused.message,
                "error_details": refused.message,
            }
        else:  # grpc-gateway's google.rpc.Status (InvalidArgument = 3, NotFound = 5)
            body = {"code": 5 if refused.status == 404 else 3, "message": refused.message}
            body["details"] = []
        self._reply(refused.status, body)

    def _record(self) -> Call:
        parsed = urllib.parse.urlparse(self.path)
        query = dict(urllib.parse.parse_qsl(parsed.query))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        proxied = _PROXY.match(parsed.path)
        call = Call(self.command, proxied.group(2) if proxied else parsed.path, query)
        call.proxy_namespace = proxied.group(1) if proxied else ""
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

    def _handle(self, route: Any) -> None:
        call = self._record()
        try:
            status, payload = route(call, call.path.removeprefix(API))
        except Refused as refused:
            return self._refuse(refused)
        self._reply(status, payload)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._handle(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._handle(self._post)

    def do_DELETE(self) -> None:  # noqa: N802
        self._handle(self._delete)

    def _get(self, call: Call, path: str) -> tuple[int, Any]:
        s = self.state
        if path == "/healthz":
            health = {"commit_sha": "0" * 7, "tag_name": s.version, "multi_user": s.multi_user}
            return 200, dict(health, pipeline_store="database")
        if path == "/pipelines":
            namespace = s.namespace(
                call.query.get("namespace"), "Namespace is required for pipeline operations"
            )
            name = _filter_name(call.query)
            found = [
                p
                for p in s.pipelines.values()
                if (name is None or p["display_name"] == name) and p["namespace"] == namespace
            ]
            return 200, {"pipelines": found, "total_size": len(found)}
        if path.startswith("/pipelines/") and path.endswith("/versions"):
            pipeline_id = path.split("/")[2]
            versions = sorted(s.versions.get(pipeline_id, []), key=lambda v: v["created_at"])
            if call.query.get("sort_by", "").endswith("desc"):
                versions.reverse()
            size = int(call.query.get("page_size") or 100)
            return 200, {"pipeline_versions": versions[:size]}
        if path == "/experiments":
            namespace = s.namespace(
                call.query.get("namespace"),
                "An experiment cannot have an empty namespace in multi-user mode",
            )
            name = _filter_name(call.query)
            found = [
                e
                for e in s.experiments.values()
                if (name is None or e["display_name"] == name)
                and e.get("namespace", "") == namespace
            ]
            return 200, {"experiments": found, "total_size": len(found)}
        if path.startswith("/runs/"):
            run_id = path.split("/")[2]
            if run_id not in s.runs:
                raise Refused(
                    404, f"Failed to get a run: ResourceNotFoundError: Run {run_id} not found"
                )
            return 200, s.runs[run_id]
        if path == "/recurringruns":
            namespace = s.namespace(
                call.query.get("namespace"),
                "a recurring run cannot have an empty namespace in multi-user mode",
            )
            found = [r for r in s.recurring_runs.values() if r["namespace"] == namespace]
            return 200, {"recurringRuns": found, "total_size": len(found)}
        raise Refused(404, f"not found: {call.path}")

    def _post(self, call: Call, path: str) -> tuple[int, Any]:
        s = self.state
        n = len(s.calls)
        if path == "/pipelines/upload":
            inputs = check_pipeline_file(call.files.get("uploadfile", b""))
            namespace = s.namespace(
                call.query.get("namespace"), "Namespace is required for pipeline operations"
            )
            name = call.query.get("name", "")
            if any(
                p["display_name"] == name and p["namespace"] == namespace
                for p in s.pipelines.values()
            ):
                raise Refused(409, f"pipeline {name} exists")
            pipeline = {"pipeline_id": s.new_id("pipeline"), "display_name": name}
            pipeline.update(created_at=_created(n), namespace=namespace)
            version_id = s.new_id("version")
            s.pipelines[pipeline["pipeline_id"]] = pipeline
            s.inputs[version_id] = inputs
            s.versions[pipeline["pipeline_id"]] = [
                {
                    "pipeline_id": pipeline["pipeline_id"],
                    "pipeline_version_id": version_id,
                    "display_name": name,
                    "created_at": _created(n),
                }
            ]
            return 200, pipeline
        if path == "/pipelines/upload_version":
            inputs = check_pipeline_file(call.files.get("uploadfile", b""))
            pipeline_id = call.query["pipelineid"]
            if pipeline_id not in s.pipelines:
                raise Refused(404, "no such pipeline", True)
            version = {
                "pipeline_id": pipeline_id,
                "pipeline_version_id": s.new_id("version"),
                "display_name": call.query["name"],
                "created_at": _created(n),
            }
            s.inputs[version["pipeline_version_id"]] = inputs
            s.versions[pipeline_id].append(version)
            return 200, version
        if path == "/experiments":
            namespace = s.namespace(
                call.body.get("namespace"),
                "An experiment cannot have an empty namespace in multi-user mode",
            )
            experiment = dict(call.body, experiment_id=s.new_id("experiment"), namespace=namespace)
            s.experiments[experiment["experiment_id"]] = experiment
            return 200, experiment
        if path == "/runs":
            if not call.body.get("display_name"):
                raise Refused(400, "The run name is empty. Please specify a valid name")
            namespace = s.experiment_namespace(
                call.body, "A run cannot have an empty namespace in multi-user mode"
            )
            self._check_parameters(call.body)
            run = dict(call.body, run_id=s.new_id("run"), state="PENDING", namespace=namespace)
            s.runs[run["run_id"]] = run
            return 200, run
        if path.startswith("/runs/") and path.endswith(":retry"):
            return self._retry(path.split("/")[2].removesuffix(":retry"))
        if path == "/recurringruns":
            body = call.body
            if not body.get("display_name"):
                raise Refused(400, "Recurring run name is empty. Please specify a valid name")
            namespace = s.experiment_namespace(
                body, "Recurring run cannot have an empty namespace in multi-user mode"
            )
            self._check_parameters(body)
            concurrency = int(body.get("max_concurrency") or 0)
            if not 1 <= concurrency <= 10:
                raise Refused(
                    400,
                    "Max concurrency of a recurring run must be at least 1 and at most 10. "
                    f"Received {concurrency}",
                )
            cron = ((body.get("trigger") or {}).get("cron_schedule") or {}).get("cron")
            error = cron_error(cron) if cron is not None else None
            if error:
                raise Refused(
                    400,
                    "Schedule cron is not a supported format(https://godoc.org/github.com/robfig/"
                    f"cron). Error: {error}",
                )
            recurring = dict(body, recurring_run_id=s.new_id("recurring"), status="ENABLED")
            recurring["namespace"] = namespace
            s.recurring_runs[recurring["recurring_run_id"]] = recurring
            return 200, recurring
        raise Refused(404, f"not found: {call.path}")

    def _retry(self, run_id: str) -> tuple[int, Any]:
        """RetryRun: only a run whose workflow Failed (or Error, or was terminated) goes back."""
        run = self.state.runs.get(run_id)
        if run is None:
            raise Refused(
                404,
                f"Failed to retry a run: Failed to retry run {run_id} due to error fetching the "
                f"run: ResourceNotFoundError: Run {run_id} not found",
            )
        if run["state"] not in ("FAILED", "CANCELED"):
            raise Refused(
                400,
                f"Failed to retry a run: Failed to retry run {run_id}: Workflow must be "
                "Failed/Error to retry: workflow cannot be retried",
            )
        run["state"] = "RUNNING"
        return 200, {}

    def _check_parameters(self, body: dict[str, Any]) -> None:
        inputs = self.state.version_inputs(body)
        given = (body.get("runtime_config") or {}).get("parameters") or {}
        error = parameter_error(inputs, given)
        if error:
            raise Refused(400, error)

    def _delete(self, call: Call, path: str) -> tuple[int, Any]:
        if path.startswith("/recurringruns/"):
            recurring_run_id = path.split("/")[2]
            if self.state.recurring_runs.pop(recurring_run_id, None) is None:
                raise Refused(404, f"Recurring run {recurring_run_id} not found")
            return 200, {}
        raise Refused(404, f"not found: {call.path}")


class RecordingServer(LoopbackServer):
    """Start with ``with RecordingServer() as server:``; ``server.url``, ``server.state``.

    Args:
        multi_user: Behave as a multi-user (Kubeflow profiles) server.
        version: The version healthz reports (``tag_name``).
    """

    def __init__(self, multi_user: bool = False, version: str = "2.17.0") -> None:
        self.state = State(multi_user=multi_user, version=version)
        super().__init__(type("Handler", (_Handler,), {"state": self.state}))
