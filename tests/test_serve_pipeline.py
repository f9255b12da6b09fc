"""The pipeline's serving steps as compiled: side effects never cached, the deploy step's inputs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from catsdogs.pipelines.compile import compile_pipeline


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = compile_pipeline(tmp_path_factory.mktemp("compiled") / "pipeline.yaml")
    return next(iter(yaml.safe_load_all(path.read_text())))


def tasks_of(spec: dict[str, Any], component: str) -> list[dict[str, Any]]:
    """Every task, in any sub-DAG, that runs the component (its ``-2``, ``-3`` copies too)."""
    pattern = re.compile(rf"^comp-{component}(-\d+)?$")
    dags = [spec["root"]] + [c for c in spec["components"].values() if "dag" in c]
    return [
        task
        for dag in dags
        for task in dag["dag"]["tasks"].values()
        if pattern.match(task["componentRef"]["name"])
    ]


@pytest.mark.parametrize("component", ["promote", "export-and-deploy"])
def test_side_effect_steps_are_never_cached(spec: dict[str, Any], component: str) -> None:
    # promote reads the champion pointer, export-and-deploy changes the cluster: a cached result
    # would skip the gate's re-check and never re-apply a deleted InferenceService.
    tasks = tasks_of(spec, component)
    assert len(tasks) == 4  # one per finish copy
    for task in tasks:
        assert task.get("cachingOptions", {}).get("enableCache", False) is False, task


def test_deploy_step_passes_predictor_service_account_namespace_and_canary(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from catsdogs.pipelines.options import PipelineOptions

    options = PipelineOptions(
        serving_namespace="kubeflow-user-a",
        serving_service_account="gcs-reader",
        serving_canary_percent=10,
        serving_predictor="tensorflow-serving",
    )
    path = compile_pipeline(tmp_path_factory.mktemp("c") / "p.yaml", options)
    spec = next(iter(yaml.safe_load_all(path.read_text())))
    for task in tasks_of(spec, "export-and-deploy"):
        given = {
            name: value["runtimeValue"]["constant"]
            for name, value in task["inputs"]["parameters"].items()
            if "runtimeValue" in value
        }
        assert given["service_account"] == "gcs-reader"
        assert given["namespace"] == "kubeflow-user-a"
        assert given["canary_traffic_percent"] == 10
        assert given["predictor"] == "tensorflow-serving"
        assert given["image"]  # the pipeline's own image: the catsdogs predictor runs it


def test_default_deploy_step_names_the_shipped_predictor_account(spec: dict[str, Any]) -> None:
    rbac = list(
        yaml.safe_load_all(
            (Path(__file__).parents[1] / "components/serve/manifests/rbac.yaml").read_text()
        )
    )
    kinds = {doc["kind"]: doc for doc in rbac if doc}
    assert set(kinds) == {"ServiceAccount", "Role", "RoleBinding"}
    rule = kinds["Role"]["rules"][0]
    assert rule["resources"] == ["inferenceservices"] and {"get", "create", "patch"} <= set(
        rule["verbs"]
    )
    assert kinds["RoleBinding"]["roleRef"]["name"] == kinds["Role"]["metadata"]["name"]
    for task in tasks_of(spec, "export-and-deploy"):
        account = task["inputs"]["parameters"]["service_account"]["runtimeValue"]["constant"]
        assert account == kinds["ServiceAccount"]["metadata"]["name"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"serving_namespace": ".."}, "DNS label"),
        ({"serving_service_account": "a/b"}, "DNS label"),
        ({"serving_predictor": "triton"}, "predictor"),
        ({"serving_runtime_version": "2.6.2", "serving_predictor": "tensorflow-serving"}, "older"),
    ],
)
def test_serving_compile_options_are_checked(options: dict[str, Any], message: str) -> None:
    from catsdogs.components.common.errors import SettingsError
    from catsdogs.pipelines.options import PipelineOptions

    with pytest.raises(SettingsError, match=message):
        PipelineOptions(**options)


def test_tf_serving_runtime_is_pinned_to_the_exporting_tensorflow() -> None:
    import tomllib

    from catsdogs.components.common.errors import SettingsError
    from catsdogs.components.serve import deploy

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    pins = dict(d.split("==") for d in project["project"]["dependencies"] if "==" in d)
    tensorflow = tuple(int(p) for p in pins["tensorflow"].split(".")[:2])
    assert deploy.release(deploy.TF_SERVING_VERSION)[:2] == tensorflow
    settings = deploy.DeploySettings(
        "catsdogs", "gs://b/s/v0004", predictor="tensorflow-serving", gpus=1
    )
    model = deploy.manifest(settings)["spec"]["predictor"]["model"]
    assert model["runtimeVersion"] == f"{deploy.TF_SERVING_VERSION}-gpu"
    assert model["storageUri"] == "gs://b/s/v0004"
    for older in ("2.6.2", "2.20.0-gpu", "latest", "2.21"):
        with pytest.raises(SettingsError, match="older|release"):
            deploy.DeploySettings(
                "catsdogs", "gs://b/s/v0004", predictor="tensorflow-serving", runtime_version=older
            )
