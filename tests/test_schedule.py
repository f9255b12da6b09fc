"""Cron conversion and `catsdogs schedule create|list|delete` against a recording KFP server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from catsdogs.cli.app import app
from catsdogs.pipelines.schedule import to_kfp_cron
from typer.testing import CliRunner

from tests.kfp_recording_server import RecordingServer

GOLDEN = Path(__file__).parent / "golden" / "pipeline.yaml"
SOURCE = "gs://catsdogs-data/raw/train-6000"


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
    with pytest.raises(ValueError, match="Invalid cron expression") as error:
        to_kfp_cron(given)
    assert message in str(error.value)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RecordingServer]:
    for name in ("KFP_HOST", "KFP_NAMESPACE", "KFP_TOKEN", "KF_PIPELINES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with RecordingServer() as recording:
        yield recording


def create(server: RecordingServer, *extra: str) -> object:
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
            str(GOLDEN),
            "--host",
            server.url,
            "--transfer-epochs",
            "5",
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
    listed = CliRunner().invoke(app, ["schedule", "list", "--host", server.url])
    assert listed.exit_code == 0, listed.output
    assert recurring_id in listed.output
    assert "nightly" in listed.output
    assert "cron='0 0 3 * * 1'" in listed.output
    deleted = CliRunner().invoke(app, ["schedule", "delete", recurring_id, "--host", server.url])
    assert deleted.exit_code == 0, deleted.output
    assert server.state.calls_to("DELETE", f"/recurringruns/{recurring_id}")
    assert server.state.recurring_runs == {}
    empty = CliRunner().invoke(app, ["schedule", "list", "--host", server.url])
    assert "No recurring runs." in empty.output
    missing = CliRunner().invoke(app, ["schedule", "delete", "nope", "--host", server.url])
    assert missing.exit_code == 2
    assert "HTTP 404" in missing.output
