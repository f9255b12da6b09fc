"""`catsdogs submit` against a strict recording KFP v2beta1 server, single- and multi-user."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from catsdogs.cli.app import app
from catsdogs.components.common.errors import SettingsError
from catsdogs.pipelines.submit import (
    KfpError,
    Target,
    connect,
    open_session,
    refused_as_kfp_error,
    upload,
)
from typer.testing import CliRunner

from tests.kfp_recording_server import RecordingServer

GOLDEN = Path(__file__).parent / "golden" / "pipeline.yaml"
SOURCE = "gs://catsdogs-data/raw/train-6000"
PROFILE = "kubeflow-user-alice"


@pytest.fixture(params=["single-user", "multi-user"])
def server(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[RecordingServer]:
    for name in ("KFP_HOST", "KFP_NAMESPACE", "KFP_TOKEN", "KF_PIPELINES_ENDPOINT", "KUBECONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp.Client reads ~/.config/kfp/context.json
    with RecordingServer(multi_user=request.param == "multi-user") as recording:
        yield recording


def profile(server: RecordingServer) -> list[str]:
    """``--namespace PROFILE`` on a multi-user server, nothing on a single-user one."""
    return ["--namespace", PROFILE] if server.state.multi_user else []


def submit(server: RecordingServer, *extra: str, package: Path = GOLDEN) -> object:
    return CliRunner().invoke(
        app,
        [
            "submit",
            "--source",
            SOURCE,
            "--package",
            str(package),
            "--host",
            server.url,
            "--scratch-epochs",
            "7",
            "--trainers",
            "scratch",
            *profile(server),
            *extra,
        ],
    )


def test_first_submit_uploads_creates_experiment_and_starts_a_run(server: RecordingServer) -> None:
    result = submit(server, "--experiment", "nightly", "--run-name", "try-1")
    assert result.exit_code == 0, result.output
    state = server.state
    assert len(state.calls_to("GET", "/healthz")) >= 1
    uploads = state.calls_to("POST", "/pipelines/upload")
    assert len(uploads) == 1
    assert uploads[0].query["name"] == "catsdogs"
    assert uploads[0].files["uploadfile"] == GOLDEN.read_bytes()
    assert state.calls_to("POST", "/pipelines/upload_version") == []
    experiments = state.calls_to("POST", "/experiments")
    assert [c.body["display_name"] for c in experiments] == ["nightly"]
    (run_call,) = state.calls_to("POST", "/runs")
    body = run_call.body
    (pipeline_id,) = state.pipelines
    assert body["display_name"] == "try-1"
    assert body["pipeline_version_reference"]["pipeline_id"] == pipeline_id
    version_id = state.versions[pipeline_id][0]["pipeline_version_id"]
    assert body["pipeline_version_reference"]["pipeline_version_id"] == version_id
    params = body["runtime_config"]["parameters"]
    assert params["source"] == SOURCE
    assert params["scratch_epochs"] == 7
    assert params["trainers"] == "scratch"
    assert not any(k in json.dumps(params).lower() for k in ("token", "password", "secret"))
    (run_id,) = state.runs
    assert f"{server.url}/#/runs/details/{run_id}" in result.output
    assert state.runs[run_id]["experiment_id"] == next(iter(state.experiments))


def test_second_submit_adds_a_version_and_reuses_the_experiment(server: RecordingServer) -> None:
    assert submit(server).exit_code == 0
    second = submit(server)
    assert second.exit_code == 0, second.output
    state = server.state
    assert len(state.calls_to("POST", "/pipelines/upload")) == 1
    (version_call,) = state.calls_to("POST", "/pipelines/upload_version")
    (pipeline_id,) = state.pipelines
    assert version_call.query["pipelineid"] == pipeline_id
    assert version_call.query["name"].startswith("catsdogs-")
    assert len(state.calls_to("POST", "/experiments")) == 1  # found by name the second time
    assert len(state.runs) == 2
    last_run = list(state.runs.values())[-1]
    newest = state.versions[pipeline_id][-1]["pipeline_version_id"]
    assert last_run["pipeline_version_reference"]["pipeline_version_id"] == newest


def test_host_from_environment(server: RecordingServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KFP_HOST", server.url)
    result = CliRunner().invoke(
        app,
        ["submit", "--source", SOURCE, "--package", str(GOLDEN), "--pipeline-name", "cd2"]
        + profile(server),
    )
    assert result.exit_code == 0, result.output
    assert server.state.calls_to("POST", "/pipelines/upload")[0].query["name"] == "cd2"


def test_token_is_sent_as_bearer_header_never_as_parameter(
    server: RecordingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KFP_TOKEN", "tok-123")
    target = Target.from_environment(host=server.url)
    assert target.token == "tok-123"
    assert submit(server).exit_code == 0
    (run_call,) = server.state.calls_to("POST", "/runs")
    assert run_call.authorization == "Bearer tok-123"
    assert "tok-123" not in json.dumps(run_call.body)


def test_local_source_is_refused_before_any_call(server: RecordingServer) -> None:
    result = CliRunner().invoke(
        app, ["submit", "--source", "data/train", "--package", str(GOLDEN), "--host", server.url]
    )
    assert result.exit_code == 2
    assert "not reachable from the cluster" in result.output
    assert server.state.calls == []


def test_unreachable_host_is_one_clear_line() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(KfpError, match=f"127.0.0.1:{port}.*KFP_HOST"):
        connect(Target(host=f"http://127.0.0.1:{port}"))


def test_bad_host_and_missing_package() -> None:
    result = CliRunner().invoke(app, ["submit", "--source", SOURCE, "--host", "localhost:8080"])
    assert result.exit_code == 2
    assert "http://" in result.output
    missing = CliRunner().invoke(
        app, ["submit", "--source", SOURCE, "--package", "nope.yaml", "--host", "http://h:1"]
    )
    assert missing.exit_code == 2
    assert "catsdogs compile" in missing.output


@pytest.mark.parametrize("kfp_namespace", ["kubeflow", "kubeflow-system"])
def test_profile_goes_on_the_calls_and_the_client_stays_on_kfps_namespace(
    server: RecordingServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kfp_namespace: str
) -> None:
    """No host: kfp goes through the kube-proxy path, built from KFP's namespace, not the profile."""
    kubeconfig = tmp_path / ".kube" / "config"  # HOME is tmp_path (the fixture)
    kubeconfig.parent.mkdir()
    kubeconfig.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{server.url}"}}}}]
users: [{{name: u, user: {{}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u}}}}]
current-context: x
"""
    )
    monkeypatch.setenv("KFP_NAMESPACE", PROFILE)
    result = CliRunner().invoke(
        app,
        ["submit", "--source", SOURCE, "--package", str(GOLDEN), "--kfp-namespace", kfp_namespace],
    )
    assert result.exit_code == 0, result.output
    state = server.state
    assert {call.proxy_namespace for call in state.calls} == {kfp_namespace}
    (upload_call,) = state.calls_to("POST", "/pipelines/upload")
    assert upload_call.query["namespace"] == PROFILE
    (experiment_call,) = state.calls_to("POST", "/experiments")
    assert experiment_call.body["namespace"] == PROFILE
    expected = PROFILE if state.multi_user else ""  # a single-user server drops namespaces
    assert [run["namespace"] for run in state.runs.values()] == [expected]


def test_namespaces_are_kubernetes_names() -> None:
    with pytest.raises(SettingsError, match="kfp_namespace must be a Kubernetes namespace"):
        Target(kfp_namespace="Kubeflow")
    with pytest.raises(SettingsError, match="namespace must be a Kubernetes namespace"):
        Target(namespace="alice@example.com")


def test_multi_user_server_without_a_profile_is_refused_before_any_upload(
    server: RecordingServer,
) -> None:
    if not server.state.multi_user:
        pytest.skip("a single-user server needs no namespace")
    result = CliRunner().invoke(
        app, ["submit", "--source", SOURCE, "--package", str(GOLDEN), "--host", server.url]
    )
    assert result.exit_code == 2
    assert "multi-user mode" in result.output and "--namespace" in result.output
    assert server.state.calls_to("POST", "/pipelines/upload") == []


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--champion-uri", "runs/champion", "champion_uri 'runs/champion' is a local path"),
        ("--checkpoint-root", "/tmp/ckpt", "checkpoint_root '/tmp/ckpt' is a local path"),
        ("--transfer-weights", "w/vgg16.h5", "transfer_weights 'w/vgg16.h5' is a local path"),
    ],
)
def test_local_champion_checkpoints_or_weights_are_refused_before_any_call(
    server: RecordingServer, option: str, value: str, message: str
) -> None:
    result = submit(server, option, value)
    assert result.exit_code == 2
    assert message in result.output and "gs://" in result.output
    assert server.state.calls == []


def test_s3_locations_are_accepted_and_reach_the_run(server: RecordingServer) -> None:
    """MinIO/S3 clusters: s3:// source, champion, checkpoints, serving and weights pass the checks."""
    uris = {
        "champion_uri": "s3://catsdogs/champion",
        "checkpoint_root": "s3://catsdogs/checkpoints",
        "serving_uri": "s3://catsdogs/serving",
        "transfer_weights": "s3://catsdogs/weights/vgg16_notop.h5",
    }
    options = [f"--{name.replace('_', '-')}" for name in uris]
    pairs = [
        item
        for option, value in zip(options, uris.values(), strict=True)
        for item in (option, value)
    ]
    result = CliRunner().invoke(
        app,
        ["submit", "--source", "s3://catsdogs/raw", "--package", str(GOLDEN), "--host", server.url]
        + profile(server)
        + pairs,
    )
    assert result.exit_code == 0, result.output
    (run_call,) = server.state.calls_to("POST", "/runs")
    parameters = run_call.body["runtime_config"]["parameters"]
    assert parameters["source"] == "s3://catsdogs/raw"
    assert {name: parameters[name] for name in uris} == uris


def test_pipeline_root_and_service_account_reach_the_run(server: RecordingServer) -> None:
    result = submit(
        server,
        "--pipeline-root",
        "gs://catsdogs-runs/root",
        "--service-account",
        "pipeline-runner",
        "--champion-uri",
        "gs://catsdogs-runs/champion",
    )
    assert result.exit_code == 0, result.output
    (run_call,) = server.state.calls_to("POST", "/runs")
    assert run_call.body["runtime_config"]["pipeline_root"] == "gs://catsdogs-runs/root"
    assert run_call.body["service_account"] == "pipeline-runner"
    bad = submit(server, "--pipeline-root", "/data/root")
    assert bad.exit_code == 2 and "gs://, s3://, minio://" in bad.output


def test_an_old_server_gets_a_warning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KFP_NAMESPACE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    for version, warned in (("2.5.0", True), ("unknown", True), ("2.17.0", False)):
        with RecordingServer(version=version) as old:
            result = submit(old)
        assert result.exit_code == 0, result.output
        assert ("needs 2.17.0 or later" in result.output) is warned, version


def test_the_servers_own_message_is_shown(server: RecordingServer, tmp_path: Path) -> None:
    package = tmp_path / "renamed.yaml"
    package.write_text(GOLDEN.read_text().replace("name: catsdogs\n", "name: Cats_Dogs\n", 1))
    result = submit(server, package=package)
    assert result.exit_code == 2
    assert "HTTP 400" in result.output
    assert "pipeline's name must contain only lowercase alphanumeric" in result.output


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"source": SOURCE, "epochs": 3}, "not required by pipeline: epochs"),
        ({"seed": 1}, "parameter source is not optional"),
        ({"source": SOURCE, "seed": "1"}, "input parameter seed requires type double or integer"),
        ({"source": 7}, "input parameter source requires type string"),
    ],
)
def test_the_fake_server_checks_run_parameters_like_the_real_one(
    server: RecordingServer, params: dict[str, object], message: str
) -> None:
    target = Target(host=server.url, namespace=PROFILE if server.state.multi_user else None)
    session = open_session(target)
    with refused_as_kfp_error():
        uploaded = upload(session, GOLDEN, target)
        experiment = session.client.create_experiment("e", namespace=session.namespace)
    with pytest.raises(KfpError, match="HTTP 400") as error:
        with refused_as_kfp_error():
            session.client.run_pipeline(
                experiment_id=experiment.experiment_id,
                job_name="r",
                params=params,
                pipeline_id=uploaded.pipeline_id,
                version_id=uploaded.version_id,
            )
    assert message in str(error.value)
    assert server.state.runs == {}


def test_the_fake_server_checks_pipeline_specs_like_the_real_one(tmp_path: Path) -> None:
    from tests.kfp_recording_server import Refused, check_pipeline_file

    text = GOLDEN.read_text()
    assert "source" in check_pipeline_file(text.encode())
    for bad, message in (
        (text.replace("schemaVersion: 2.1.0", "schemaVersion: 2.0.0"), "schema version 2.1.0"),
        (text.replace("name: catsdogs\n", "name: catsdogs_v2\n", 1), "lowercase alphanumeric"),
        ("a: [", "unable to decode yaml"),
        ("a: 1\n", "no pipeline spec is provided"),
    ):
        with pytest.raises(Refused, match=message):
            check_pipeline_file(bad.encode())


# ------------------------------------------------------------------------------ runs retry


def retry(server: RecordingServer, run_id: str) -> Any:
    return CliRunner().invoke(
        app, ["runs", "retry", run_id, "--host", server.url, *profile(server)]
    )


def test_runs_retry_posts_the_2_17_retry_endpoint_for_a_failed_run(server: RecordingServer) -> None:
    assert submit(server).exit_code == 0
    (run_id,) = server.state.runs
    server.state.runs[run_id]["state"] = "FAILED"  # e.g. a trainer's pod vanished (Error)
    result = retry(server, run_id)
    assert result.exit_code == 0, result.output
    (call,) = server.state.calls_to("POST", f"/runs/{run_id}:retry")
    assert call.body is None and call.query == {}  # RetryRunRequest: run_id in the path only
    assert server.state.calls_to("GET", f"/runs/{run_id}")  # the state is read first
    assert server.state.runs[run_id]["state"] == "RUNNING"
    assert f"Retrying run {run_id}" in result.output and "was FAILED" in result.output
    assert f"{server.url}/#/runs/details/{run_id}" in result.output


@pytest.mark.parametrize(
    ("state", "message"), [("RUNNING", "wait for it to end"), ("SUCCEEDED", "nothing to retry")]
)
def test_runs_retry_refuses_a_run_that_has_not_failed_without_a_retry_call(
    server: RecordingServer, state: str, message: str
) -> None:
    assert submit(server).exit_code == 0
    (run_id,) = server.state.runs
    server.state.runs[run_id]["state"] = state
    result = retry(server, run_id)
    assert result.exit_code == 2
    assert message in result.output and state in result.output
    assert server.state.calls_to("POST", f"/runs/{run_id}:retry") == []


def test_runs_retry_shows_the_servers_refusal(server: RecordingServer) -> None:
    result = retry(server, "no-such-run")
    assert result.exit_code == 2
    assert "HTTP 404" in result.output and "Run no-such-run not found" in result.output
    from catsdogs.pipelines.runs import retry as retry_run

    assert submit(server).exit_code == 0
    (run_id,) = server.state.runs
    server.state.runs[run_id]["state"] = "FAILED"
    target = Target(host=server.url, namespace=PROFILE if server.state.multi_user else None)
    session = open_session(target)
    retry_run(session, target, run_id)
    with pytest.raises(KfpError, match="Workflow must be Failed/Error to retry"):
        # A second retry while the first runs: the server refuses, with its own message.
        with refused_as_kfp_error():
            session.client._run_api.run_service_retry_run(run_id)


def test_runs_retry_refuses_a_malformed_id_before_any_call(server: RecordingServer) -> None:
    result = retry(server, "../runs/x")
    assert result.exit_code == 2
    assert "is not a Kubeflow Pipelines run id" in result.output
    assert not [c for c in server.state.calls if "/runs" in c.path]


def test_submit_refuses_a_package_whose_image_is_a_bare_tag(
    server: RecordingServer, tmp_path: Path
) -> None:
    tagged = tmp_path / "tagged.yaml"
    made = CliRunner().invoke(app, ["compile", "--allow-tag", "--output", str(tagged)])
    assert made.exit_code == 0, made.output
    refused = submit(server, package=tagged)
    assert refused.exit_code == 2
    assert "is a tag, not a digest" in refused.output
    assert server.state.calls_to("POST", "/runs") == []
    allowed = submit(server, "--allow-tag", package=tagged)
    assert allowed.exit_code == 0, allowed.output
    assert "WARNING: the component image" in allowed.output
    assert len(server.state.calls_to("POST", "/runs")) == 1
