"""The KFP 2.17.0 backend's cache key, ported, and a walk of a compiled pipeline that applies it.

Ported from kubeflow/pipelines at tag 2.17.0 (no code copied, the algorithm restated):

- ``backend/src/v2/cacheutils/cache.go``: ``GenerateCacheKey`` builds a ``CacheKey`` proto
  (``api/v2alpha1/cache_key.proto``) of the input artifacts' *names* (their MLMD ids), every input
  parameter value, the output artifacts' name, type and metadata (URIs wiped), the output
  parameters' types, and ``containerSpec`` = image + command + args (+ PVC names);
  ``GenerateFingerPrint`` marshals it with ``protojson``, re-formats that with Go's
  ``encoding/json`` (sorted keys, no spaces, shortest floats, ``<>&`` escaped) and takes the
  sha256 hex digest.
- ``backend/src/v2/driver/cache.go``: ``getFingerPrint`` passes the component's output parameter
  types, ``opts.Container.Command`` + ``Args`` (the placeholders unresolved) and
  ``opts.Container.Image``; ``getFingerPrintsAndID`` computes a key only when the task's
  ``cachingOptions.enableCache`` is set and the task will trigger; the cache is looked up by
  fingerprint, ``"pipeline/" + pipeline name`` and namespace.
- ``backend/src/v2/driver/container.go`` + ``driver.go`` (``provisionOutputs``): outputs are the
  component's output artifacts, named by their output name, plus ``executor-logs``
  (``system.Artifact``) when the driver's ``--publish_logs`` is ``true`` (its default).
- ``backend/src/v2/driver/resolve.go`` (``resolveInputs``, ``resolveInputParameter``): a task's
  parameters come from the parent DAG's inputs, an upstream task's outputs or a constant (with
  ``{{$.pipeline_job_uuid}}`` and friends substituted); a STRING input fed a non-string is turned
  into its JSON text; optional DAG inputs left unset take their default.
- ``backend/src/v2/metadata/converter.go`` (``toRuntimeArtifact``): an input artifact's name is its
  MLMD id. A cache hit republishes the cached execution's output artifacts (``reuseCachedOutputs``),
  so downstream tasks see the same ids; a miss makes new ones. :class:`Store` models exactly that.
"""

from __future__ import annotations

import dataclasses
import decimal
import hashlib
import itertools
import json
import re
from collections.abc import Callable
from typing import Any

_HTML = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def go_float(value: float) -> str:
    """Go ``encoding/json``'s float64: shortest digits, 'f' form unless < 1e-6 or >= 1e21."""
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("encoding/json refuses NaN and infinities")
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    magnitude = abs(value)
    if magnitude < 1e-6 or magnitude >= 1e21:
        mantissa, _, exponent = repr(value).partition("e")
        sign, digits = (exponent[0], exponent[1:]) if exponent[0] in "+-" else ("+", exponent)
        return f"{mantissa}e{sign}{int(digits):02d}".replace("e+0", "e+").replace("e-0", "e-")
    text = format(decimal.Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def go_json(value: Any) -> str:
    """``json.Marshal`` of the ``interface{}`` that ``json.Unmarshal`` made of ``value``."""
    if isinstance(value, dict):
        items = (f"{go_json(key)}:{go_json(value[key])}" for key in sorted(value))
        return "{" + ",".join(items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(go_json(item) for item in value) + "]"
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return go_float(float(value))  # json.Unmarshal makes every number a float64
    text = json.dumps(str(value), ensure_ascii=False)
    return re.sub("[<>&\u2028\u2029]", lambda match: _HTML[match.group()], text)


def _pruned(message: dict[str, Any]) -> dict[str, Any]:
    """protojson leaves out unpopulated fields: empty maps, lists and strings, absent messages."""
    return {key: value for key, value in message.items() if value not in ({}, [], "", None)}


def cache_key(
    input_artifact_names: dict[str, list[str]],
    input_parameter_values: dict[str, Any],
    output_artifacts: dict[str, dict[str, Any]],
    output_parameter_types: dict[str, str],
    command_and_args: list[str],
    image: str,
    pvc_names: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``GenerateCacheKey``: the ``CacheKey`` message as protojson would write it."""
    artifacts = {
        name: _pruned({"artifactNames": list(names)})
        for name, names in input_artifact_names.items()
    }
    outputs = {name: _pruned(dict(spec, name=name)) for name, spec in output_artifacts.items()}
    container = _pruned(
        {"image": image, "cmdArgs": list(command_and_args), "pvcNames": sorted(set(pvc_names))}
    )
    return _pruned(
        {
            "inputArtifactNames": artifacts,
            "inputParameterValues": dict(input_parameter_values),
            "outputArtifactsSpec": outputs,
            "outputParametersSpec": dict(output_parameter_types),
            "containerSpec": container,
        }
    )


def fingerprint(key: dict[str, Any]) -> str:
    """``GenerateFingerPrint``: sha256 hex of the Go-formatted protojson of the key."""
    return hashlib.sha256(go_json(key).encode()).hexdigest()


# ------------------------------------------------------------------------------ a run, walked

_PLACEHOLDERS = {
    "{{$.pipeline_job_uuid}}": "run_id",
    "{{$.pipeline_job_name}}": "run_display_name",
    "{{$.pipeline_job_resource_name}}": "run_name",
    "{{$.pipeline_job_create_time_utc}}": "create_time",
    "{{$.pipeline_job_schedule_time_utc}}": "schedule_time",
}


@dataclasses.dataclass
class Store:
    """ML Metadata as the cache sees it: executions by fingerprint, artifacts by id."""

    executions: dict[str, tuple[dict[str, list[str]], dict[str, Any]]] = dataclasses.field(
        default_factory=dict
    )
    ids: Any = dataclasses.field(default_factory=lambda: itertools.count(1))


@dataclasses.dataclass(frozen=True)
class Run:
    """What distinguishes one run of the same pipeline from another."""

    run_id: str
    run_name: str
    create_time: str
    schedule_time: str = ""
    run_display_name: str = ""


@dataclasses.dataclass
class Walked:
    """Per container task (path of task names): its fingerprint (None: not cached) and a hit."""

    keys: dict[str, str | None] = dataclasses.field(default_factory=dict)
    hits: dict[str, bool] = dataclasses.field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)


Outputs = Callable[[str, dict[str, Any]], dict[str, Any]]


def _condition(expression: str, values: dict[str, Any]) -> bool:
    """The CEL subset the KFP compiler writes for dsl.If/Elif/Else (==, !=, !, &&, ||)."""
    text = re.sub(
        r"inputs\.parameter_values\['([^']+)'\]", lambda m: repr(values[m.group(1)]), expression
    )
    text = text.replace("&&", " and ").replace("||", " or ").replace("!(", " not (")
    text = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", text))
    return bool(eval(text, {"__builtins__": {}}))  # noqa: S307 - compiler-written, tested input


class Walker:
    """Walk a compiled pipeline spec as the 2.17 drivers resolve it, computing each cache key.

    Args:
        spec: The compiled pipeline (first YAML document).
        outputs: Makes a container task's parameter outputs on a cache miss, from its
            component name (``comp-...``) and resolved input parameters.
        store: The shared ML Metadata; walk two runs with one store to see cache hits.
        publish_logs: The driver's ``--publish_logs`` (default ``true``).
    """

    def __init__(
        self, spec: dict[str, Any], outputs: Outputs, store: Store, publish_logs: bool = True
    ) -> None:
        self.spec, self.outputs, self.store, self.publish_logs = spec, outputs, store, publish_logs

    def run(self, run: Run, arguments: dict[str, Any]) -> Walked:
        """Walk the root DAG with the run's arguments (root defaults fill the rest)."""
        root = self.spec["root"]
        params = {
            name: definition["defaultValue"]
            for name, definition in root.get("inputDefinitions", {}).get("parameters", {}).items()
            if "defaultValue" in definition
        }
        params.update(arguments)
        walked = Walked()
        self._dag(root, params, {}, run, "", walked)
        return walked

    def _dag(
        self,
        component: dict[str, Any],
        params: dict[str, Any],
        artifacts: dict[str, list[str]],
        run: Run,
        path: str,
        walked: Walked,
    ) -> tuple[dict[str, Any], dict[str, list[str]]] | None:
        tasks = component["dag"]["tasks"]
        done: dict[str, tuple[dict[str, Any], dict[str, list[str]]] | None] = {}
        while len(done) < len(tasks):
            ready = [
                name
                for name, task in tasks.items()
                if name not in done and all(d in done for d in self._upstream(task))
            ]
            if not ready:
                raise ValueError(f"cycle or unknown producer in {path or 'root'}")
            for name in sorted(ready):
                done[name] = self._task(
                    name, tasks[name], params, artifacts, done, run, path, walked
                )
        outputs = component["dag"].get("outputs", {})
        out_params: dict[str, Any] = {}
        for name, spec in outputs.get("parameters", {}).items():
            selector = spec["valueFromParameter"]
            produced = done.get(selector["producerSubtask"])
            if produced is not None:
                out_params[name] = produced[0][selector["outputParameterKey"]]
        out_artifacts: dict[str, list[str]] = {}
        for name, spec in outputs.get("artifacts", {}).items():
            for selector in spec["artifactSelectors"]:
                produced = done.get(selector["producerSubtask"])
                if produced is not None:
                    out_artifacts[name] = produced[1][selector["outputArtifactKey"]]
        return out_params, out_artifacts

    @staticmethod
    def _upstream(task: dict[str, Any]) -> set[str]:
        found = set(task.get("dependentTasks", []))
        inputs = task.get("inputs", {})
        for kind, key in (
            ("parameters", "taskOutputParameter"),
            ("artifacts", "taskOutputArtifact"),
        ):
            for spec in inputs.get(kind, {}).values():
                if key in spec:
                    found.add(spec[key]["producerTask"])
        return found

    def _task(
        self,
        name: str,
        task: dict[str, Any],
        params: dict[str, Any],
        artifacts: dict[str, list[str]],
        done: dict[str, Any],
        run: Run,
        path: str,
        walked: Walked,
    ) -> tuple[dict[str, Any], dict[str, list[str]]] | None:
        component_name = task["componentRef"]["name"]
        component = self.spec["components"][component_name]
        values: dict[str, Any] = {}
        for key, spec in task.get("inputs", {}).get("parameters", {}).items():
            if "componentInputParameter" in spec:
                values[key] = params[spec["componentInputParameter"]]
            elif "taskOutputParameter" in spec:
                producer = done[spec["taskOutputParameter"]["producerTask"]]
                if producer is None:
                    return None  # produced by a skipped task: this one does not run either
                values[key] = producer[0][spec["taskOutputParameter"]["outputParameterKey"]]
            elif "runtimeValue" in spec:
                constant = spec["runtimeValue"]["constant"]
                field = _PLACEHOLDERS.get(constant) if isinstance(constant, str) else None
                values[key] = getattr(run, field) if field else constant
            elif "taskFinalStatus" in spec:
                values[key] = {"state": "SUCCEEDED", "pipelineTaskName": name}
        names: dict[str, list[str]] = {}
        for key, spec in task.get("inputs", {}).get("artifacts", {}).items():
            if "componentInputArtifact" in spec:
                names[key] = artifacts[spec["componentInputArtifact"]]
            else:
                producer = done[spec["taskOutputArtifact"]["producerTask"]]
                if producer is None:
                    return None
                names[key] = producer[1][spec["taskOutputArtifact"]["outputArtifactKey"]]
        definitions = component.get("inputDefinitions", {}).get("parameters", {})
        for key, definition in definitions.items():
            if key not in values and definition.get("isOptional") and "dag" in component:
                values[key] = definition.get("defaultValue")
            if definition.get("parameterType") == "STRING" and not isinstance(
                values.get(key, ""), str
            ):
                values[key] = json.dumps(values[key])  # metadata.PbValueToText
        condition = task.get("triggerPolicy", {}).get("condition")
        if condition and not _condition(condition, values):
            return None
        here = f"{path}/{name}" if path else name
        if "dag" in component:
            return self._dag(component, values, names, run, here, walked)
        return self._container(task, component, values, names, here, walked)

    def _container(
        self,
        task: dict[str, Any],
        component: dict[str, Any],
        values: dict[str, Any],
        names: dict[str, list[str]],
        path: str,
        walked: Walked,
    ) -> tuple[dict[str, Any], dict[str, list[str]]]:
        executor = self.spec["deploymentSpec"]["executors"][component["executorLabel"]]
        container = executor["container"]
        definitions = component.get("outputDefinitions", {})
        out_artifacts = {
            name: {"type": spec["artifactType"], "metadata": spec.get("metadata")}
            for name, spec in definitions.get("artifacts", {}).items()
        }
        if self.publish_logs:
            out_artifacts["executor-logs"] = {"type": {"schemaTitle": "system.Artifact"}}
        out_types = {
            name: spec["parameterType"] for name, spec in definitions.get("parameters", {}).items()
        }
        cached = task.get("cachingOptions", {}).get("enableCache", False)
        key = None
        if cached:
            key = fingerprint(
                cache_key(
                    names,
                    values,
                    out_artifacts,
                    out_types,
                    [*container.get("command", []), *container.get("args", [])],
                    container["image"],
                )
            )
        walked.keys[path] = key
        walked.inputs[path] = values
        if key is not None and key in self.store.executions:
            walked.hits[path] = True
            return self.store.executions[key][1], self.store.executions[key][0]
        walked.hits[path] = False
        made = {name: [str(next(self.store.ids))] for name in out_artifacts}
        produced = dict(self.outputs(task["componentRef"]["name"], values))
        if key is not None:
            self.store.executions[key] = (made, produced)
        return produced, made
