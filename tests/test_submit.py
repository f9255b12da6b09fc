"""`catsdogs submit` against a recording KFP v2beta1 server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from catsdogs.cli.app import app
from catsdogs.pipelines.submit import KfpError, Target, connect
from typer.testing import CliRunner

from tests.kfp_recording_server import RecordingServer

GOLDEN = Path(__file__).parent / "golden" / "pipeline.yaml"
SOURCE = "gs://catsdogs-data/raw/train-6000"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RecordingServer]:
    for name in ("KFP_HOST", "KFP_NAMESPACE", "KFP_TOKEN", "KF_PIPELINES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp.Client reads ~/.config/kfp/context.json
    with RecordingServer() as recording:
        yield recording


def submit(server: RecordingServer, *extra: str) -> object:
    return CliRunner().invoke(
        app,
        [
            "submit",
            "--source",
            SOURCE,
            "--package",
            str(GOLDEN),
            "--host",
            server.url,
            "--scratch-epochs",
            "7",
            "--trainers",
            "scratch",
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
        app, ["submit", "--source", SOURCE, "--package", str(GOLDEN), "--pipeline-name", "cd2"]
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
