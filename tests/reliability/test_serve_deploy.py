"""Finding 9 (issue 21): deploy checks names before it sends anything.

Namespaces and service accounts are DNS labels (``..`` would turn the request into a PATCH on a
cluster-wide path; ``a/b``, spaces and newlines were sent as they were), accelerator types are
``domain/name`` (``--accelerator-type cpu --gpus 4`` overrode the validated CPU request).
"""

from __future__ import annotations

import pytest
from catsdogs.cli.app import app
from typer.testing import CliRunner

from tests.k8s_recording_server import RecordingServer

runner = CliRunner()
BAD = [
    ["--namespace", ".."],
    ["--namespace", "a/b"],
    ["--namespace", "kubeflow user"],
    ["--namespace", "ml\nx"],
    ["--namespace", "-ml"],
    ["--namespace", "x" * 64],
    ["--service-account", "../admin"],
    ["--service-account", "sa name"],
    ["--service-account", "Default"],
    ["--accelerator-type", "cpu", "--gpus", "4"],
    ["--accelerator-type", "memory", "--gpus", "1"],
    ["--accelerator-type", "kubernetes.io/cpu", "--gpus", "1"],
    ["--accelerator-type", "nvidia.com/gpu\n", "--gpus", "1"],
]


@pytest.mark.parametrize("bad", BAD, ids=[repr(b[1]) for b in BAD])
def test_deploy_refuses_bad_names_before_any_request(bad: list[str]) -> None:
    with RecordingServer() as k8s:
        result = runner.invoke(
            app,
            ["deploy", "--serving-uri", "gs://b/serving/v0001", "--host", k8s.url, *bad],
        )
        calls = list(k8s.state.calls)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and bad[0] in result.output
    assert calls == []


def test_good_names_are_applied() -> None:
    with RecordingServer() as k8s:
        result = runner.invoke(
            app,
            [
                "deploy", "--serving-uri", "gs://b/serving/v0001", "--host", k8s.url,
                "--namespace", "kubeflow-user-a", "--service-account", "gcs-reader",
                "--accelerator-type", "amd.com/gpu", "--gpus", "1",
            ],
        )  # fmt: skip
        [call] = k8s.state.calls
    assert result.exit_code == 0, result.output
    assert call.path.endswith("/namespaces/kubeflow-user-a/inferenceservices/catsdogs")
    predictor = call.body["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "gcs-reader"
    assert predictor["containers"][0]["resources"]["limits"]["amd.com/gpu"] == "1"
