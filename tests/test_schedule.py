"""Cron conversion and `catsdogs schedule create|list|delete` against a strict recording KFP server.

The server tests run against a single-user and a multi-user server (profile namespace on the calls).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from catsdogs.cli.app import app
from catsdogs.components.common.errors import SettingsError
from catsdogs.pipelines.schedule import to_kfp_cron
from catsdogs.pipelines.submit import (
    KfpError,
    Target,
    experiment_id,
    open_session,
    refused_as_kfp_error,
    upload,
)
from typer.testing import CliRunner

from tests.kfp_recording_server import RecordingServer, cron_error

GOLDEN = Path(__file__).parent / "golden" / "pipeline.yaml"
SOURCE = "gs://catsdogs-data/raw/train-6000"
PROFILE = "kubeflow-user-alice"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("0 3 * * *", "0 0 3 * * *"),
        ("*/15 9-17 * * MON-FRI", "0 */15 9-17 * * MON-FRI"),
        ("30 2 1,15 * ?", "0 30 2 1,15 * ?"),
        ("  5   4 * JAN,jul 0 ", "0 5 4 * JAN,jul 0"),
        ("0 0 3 * * *", "0 0 3 * * *"),
        ("15 0 3 ? * 1-5", "15 0 3 ? * 1-5"),
        ("@daily", "@daily"),
        ("@every 6h", "@every 6h"),
    ],
)
def test_cron_is_converted_to_six_fields(given: str, expected: str) -> None:
    assert to_kfp_cron(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("0 3 * *", "expected 5 fields"),
        ("0 0 0 3 * * *", "got 7"),
        ("60 3 * * *", "minute 60 is outside 0-59"),
        ("0 24 * * *", "hour 24 is outside 0-23"),
        ("0 3 0 * *", "day of month 0 is outside 1-31"),
        ("0 3 * 13 *", "month 13 is outside 1-12"),
        ("0 3 * * 7", "use 0 for Sunday"),
        ("61 0 3 * * *", "second 61 is outside 0-59"),
        ("0 3 * * FUNDAY", "expected a number 0-6 or a name"),
        ("*/0 3 * * *", "step '0' must be a positive"),
        ("0 5-2 * * *", "runs backwards"),
        ("? 3 * * *", "minute has '?'"),
        ("@sometimes", "expected five fields"),
        ("", "got 1"),
    ],
)
def test_invalid_cron_is_rejected_with_the_reason(given: str, message: str) -> None:
    with pytest.raises(SettingsError, match="Invalid cron expression") as error:
        to_kfp_cron(given)
    assert message in str(error.value)


@pytest.fixture(params=["single-user", "multi-user"])
def server(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[RecordingServer]:
    for name in ("KFP_HOST", "KFP_NAMESPACE", "KFP_TOKEN", "KF_PIPELINES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with RecordingServer(multi_user=request.param == "multi-user") as recording:
        yield recording


def profile(server: RecordingServer) -> list[str]:
    """``--namespace PROFILE`` on a multi-user server, nothing on a single-user one."""
    return ["--namespace", PROFILE] if server.state.multi_user else []


def cli(server: RecordingServer, *args: str) -> object:
    """``catsdogs schedule ARGS --host URL [--namespace PROFILE]``."""
    command = ["schedule", *args, "--host", server.url, *profile(server)]
    return CliRunner().invoke(app, command)


def create(server: RecordingServer, *extra: str, package: Path = GOLDEN) -> Any:
    return CliRunner().invoke(
        app,
        [
            "schedule",
            "create",
            "--source",
            SOURCE,
            "--cron",
            "0 3 * * 1",
            "--package",
            str(package),
            "--host",
            server.url,
            "--transfer-epochs",
            "5",
            *profile(server),
            *extra,
        ],
    )


def test_create_sends_six_field_cron_one_at_a_time_and_no_catchup(
    server: RecordingServer,
) -> None:
    result = create(server, "--name", "weekly")
    assert result.exit_code == 0, result.output
    (call,) = server.state.calls_to("POST", "/recurringruns")
    body = call.body
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert int(body["max_concurrency"]) == 1
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["display_name"] == "weekly"
    assert body["runtime_config"]["parameters"]["transfer_epochs"] == 5
    assert body["runtime_config"]["parameters"]["source"] == SOURCE
    (pipeline_id,) = server.state.pipelines
    assert body["pipeline_version_reference"]["pipeline_id"] == pipeline_id
    assert body["experiment_id"] in server.state.experiments
    assert "0 0 3 * * 1" in result.output
    # A second schedule uploads a new version of the same pipeline, and may catch up if asked.
    again = create(server, "--catchup", "--max-concurrency", "2")
    assert again.exit_code == 0, again.output
    assert len(server.state.calls_to("POST", "/pipelines/upload_version")) == 1
    second = server.state.calls_to("POST", "/recurringruns")[1].body
    assert second["no_catchup"] is False
    assert int(second["max_concurrency"]) == 2


def test_invalid_cron_makes_no_call(server: RecordingServer) -> None:
    result = CliRunner().invoke(
        app,
        [
            "schedule",
            "create",
            "--source",
            SOURCE,
            "--cron",
            "0 25 * * *",
            "--package",
            str(GOLDEN),
            "--host",
            server.url,
        ],
    )
    assert result.exit_code == 2
    assert "hour 25 is outside 0-23" in result.output
    assert server.state.calls == []


def test_list_and_delete(server: RecordingServer) -> None:
    assert create(server, "--name", "nightly").exit_code == 0
    (recurring_id,) = server.state.recurring_runs
    listed = cli(server, "list")
    assert listed.exit_code == 0, listed.output
    assert recurring_id in listed.output
    assert "nightly" in listed.output
    assert "cron='0 0 3 * * 1'" in listed.output
    deleted = cli(server, "delete", recurring_id)
    assert deleted.exit_code == 0, deleted.output
    assert server.state.calls_to("DELETE", f"/recurringruns/{recurring_id}")
    assert server.state.recurring_runs == {}
    empty = cli(server, "list")
    assert "No recurring runs." in empty.output
    missing = cli(server, "delete", "nope")
    assert missing.exit_code == 2
    assert "HTTP 404" in missing.output
    assert "Recurring run nope not found" in missing.output  # the server's own message


def test_create_twice_with_one_name_replaces_the_schedule(server: RecordingServer) -> None:
    first = create(server, "--name", "weekly")
    assert first.exit_code == 0, first.output
    (old_id,) = server.state.recurring_runs
    second = create(server, "--name", "weekly")
    assert second.exit_code == 0, second.output
    assert f"Replaced recurring run {old_id}" in second.output
    (new_id,) = server.state.recurring_runs
    assert new_id != old_id
    newest = server.state.calls_to("POST", "/pipelines/upload_version")[-1].query["name"]
    assert newest in server.state.recurring_runs[new_id]["description"]
    assert create(server, "--name", "nightly").exit_code == 0  # another name: a second schedule
    assert len(server.state.recurring_runs) == 2


def test_create_sends_pipeline_root_and_service_account_and_refuses_local_paths(
    server: RecordingServer,
) -> None:
    result = create(
        server, "--pipeline-root", "minio://mlpipeline/v2", "--service-account", "default-editor"
    )
    assert result.exit_code == 0, result.output
    (call,) = server.state.calls_to("POST", "/recurringruns")
    assert call.body["runtime_config"]["pipeline_root"] == "minio://mlpipeline/v2"
    assert call.body["service_account"] == "default-editor"
    calls = len(server.state.calls)
    local = create(server, "--checkpoint-root", "checkpoints")
    assert local.exit_code == 2
    assert "checkpoint_root 'checkpoints' is a local path" in local.output
    assert len(server.state.calls) == calls


@pytest.mark.parametrize(
    ("cron", "max_concurrency", "message"),
    [
        ("0 3 * * *", 11, "Max concurrency of a recurring run must be at least 1 and at most 10"),
        ("0 0 3 * * * *", 1, "Expected 5 to 6 fields, found 7"),
        ("0 0 25 * * *", 1, "End of range (25) above maximum (23)"),
        ("@fortnightly", 1, "Unrecognized descriptor: @fortnightly"),
    ],
)
def test_the_fake_server_refuses_cron_and_max_concurrency_like_the_real_one(
    server: RecordingServer, cron: str, max_concurrency: int, message: str
) -> None:
    target = Target(host=server.url, namespace=PROFILE if server.state.multi_user else None)
    session = open_session(target)
    with refused_as_kfp_error():
        uploaded = upload(session, GOLDEN, target)
        experiment = experiment_id(session, target)
    with pytest.raises(KfpError, match="HTTP 400") as error:
        with refused_as_kfp_error():
            session.client.create_recurring_run(
                experiment_id=experiment,
                job_name="direct",
                cron_expression=cron,
                max_concurrency=max_concurrency,
                params={"source": SOURCE},
                pipeline_id=uploaded.pipeline_id,
                version_id=uploaded.version_id,
            )
    assert message in str(error.value)
    assert server.state.recurring_runs == {}


@pytest.mark.parametrize(
    "cron", ["0 0 3 * * 1", "0 3 * * 1", "0 */15 9-17 * * MON-FRI", "0 30 2 1,15 * ?", "@daily"]
)
def test_what_to_kfp_cron_sends_parses_on_the_server(cron: str) -> None:
    assert cron_error(to_kfp_cron(cron)) is None


def test_multi_user_calls_without_a_namespace_are_refused(server: RecordingServer) -> None:
    import json
    import urllib.error
    import urllib.request

    if not server.state.multi_user:
        pytest.skip("a single-user server needs no namespace")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(f"{server.url}/apis/v2beta1/recurringruns")
    assert error.value.code == 400
    assert "empty namespace in multi-user mode" in json.loads(error.value.read())["message"]
    listed = CliRunner().invoke(app, ["schedule", "list", "--host", server.url])
    assert listed.exit_code == 2 and "--namespace" in listed.output


def test_create_refuses_a_package_by_tag_or_without_the_asked_retry_note(
    server: RecordingServer, tmp_path: Path
) -> None:
    tagged = tmp_path / "tagged.yaml"
    made = CliRunner().invoke(app, ["compile", "--allow-tag", "--output", str(tagged)])
    assert made.exit_code == 0, made.output
    refused = create(server, package=tagged)
    assert refused.exit_code == 2
    assert "is a tag, not a digest" in refused.output and "--allow-tag" in refused.output
    assert server.state.calls_to("POST", "/recurringruns") == []
    allowed = create(server, "--allow-tag", package=tagged)
    assert allowed.exit_code == 0, allowed.output
    assert "WARNING: the component image" in allowed.output
    # The golden package has the exit handler; asking for none is a mismatch, said before any call.
    calls = len(server.state.calls)
    mismatch = create(server, "--no-retry-note")
    assert mismatch.exit_code == 2
    assert "compiled with the retry note that --no-retry-note asks for" in mismatch.output
    assert len(server.state.calls) == calls
