"""Secrets in URLs and tokens stay out of every message; a signed source never goes to KFP.

(run.json and the task logs of ``catsdogs run`` are checked in test_local_runs.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.k8s_recording_server import RecordingServer
from tests.kfp_recording_server import RecordingServer as RecordingKfp

PASSWORD = "pa@ss-w0rd"
GOLDEN = Path(__file__).parents[1] / "golden" / "pipeline.yaml"  # no compile needed
SIGNED = (
    "https://storage.googleapis.com/b/photos.zip?X-Goog-Algorithm=GOOG4-RSA-SHA256"
    "&X-Goog-Credential=sa%40p.iam.gserviceaccount.com&X-Goog-Signature=5ec12e7deadbeef"
)


def _error(args: list[str], env: dict[str, str] | None = None) -> str:
    from catsdogs.cli.app import app

    result = CliRunner().invoke(app, args, env=env)
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("Error: "), result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"https://alice:{PASSWORD}@example.com/x.zip", PASSWORD),
        (f"fetching http://alice:{PASSWORD}@10.0.0.1:8080/a failed", "alice"),
        (SIGNED, "5ec12e7deadbeef"),
        (SIGNED, "sa%40p.iam"),
        ("s3://b/k?X-Amz-Security-Token=FQoGZXIvYXdzEJr&X-Amz-Signature=abc123", "FQoGZXIvYXdzEJr"),
        ("https://acct.blob.core.windows.net/c/f?sv=2022&sig=Zm9vYmFy%3D", "Zm9vYmFy"),
        ("Authorization: Bearer eyJhbGciOi.payload.sig", "eyJhbGciOi"),
    ],
)
def test_redact_masks_credentials_of_every_kind(text: str, secret: str) -> None:
    from catsdogs.components.common import redaction

    assert secret in text
    masked = redaction.redact(text)
    assert secret not in masked and redaction.MASK in masked, masked
    assert redaction.redact(masked) == masked


def test_a_registered_token_is_masked_anywhere() -> None:
    from catsdogs.components.common import redaction

    redaction.register("tok-1234567890")
    assert redaction.redact("sent tok-1234567890 to x") == "sent *** to x"


def test_submit_refuses_a_signed_source_before_any_request() -> None:
    with RecordingKfp() as kfp:
        for command in (["submit"], ["schedule", "create", "--cron", "0 3 * * *"]):
            stderr = _error([*command, "--source", SIGNED, "--host", kfp.url])
            assert "carries credentials" in stderr and "Copy the data to a bucket" in stderr
            assert "5ec12e7deadbeef" not in stderr and "sa%40p" not in stderr
        assert kfp.state.calls == [], "a request was sent"


def test_submit_refuses_credentials_in_any_uri_parameter() -> None:
    stderr = _error(
        ["submit", "--source", "gs://b/raw", "--host", "http://127.0.0.1:9",
         "--champion-uri", f"https://alice:{PASSWORD}@minio.example.com/champion"]
    )  # fmt: skip
    assert "champion_uri https://***@minio.example.com/champion carries credentials" in stderr
    assert PASSWORD not in stderr


@pytest.mark.parametrize(
    "args",
    [
        ["train-transfer", "--data", "{data}", "--output", "{tmp}/m",
         "--weights", f"https://alice:{PASSWORD}@example.com/vgg16_notop.h5"],
        ["deploy", "--serving-uri", "gs://b/s/v0001", "--host", f"http://alice:{PASSWORD}@127.0.0.1:9"],
        ["submit", "--source", "gs://b/raw", "--host", f"http://alice:{PASSWORD}@127.0.0.1:9",
         "--allow-tag", "--package", str(GOLDEN)],
    ],
    ids=["train-transfer --weights", "deploy --host", "submit --host"],
)  # fmt: skip
def test_errors_never_echo_credentials(args: list[str], tmp_path: Path, tiny_dataset) -> None:
    data = tiny_dataset(per_class=1, size=32) if "{data}" in args else ""
    stderr = _error([arg.format(data=data, tmp=tmp_path) for arg in args])
    assert PASSWORD not in stderr and "alice" not in stderr, stderr
    assert "***@" in stderr, stderr


def test_deploy_reads_its_token_from_a_file_or_the_environment(tmp_path: Path) -> None:
    from catsdogs.cli.app import app

    token_file = tmp_path / "token"
    token_file.write_text("from-a-file-0123\n")
    base = ["deploy", "--serving-uri", "gs://b/s/v0001", "--namespace", "ml"]
    with RecordingServer() as k8s:
        by_file = CliRunner().invoke(
            app, [*base, "--host", k8s.url, "--token-file", str(token_file)]
        )
        by_env = CliRunner().invoke(
            app, [*base, "--host", k8s.url], env={"CATSDOGS_KUBE_TOKEN": "from-the-env-4567"}
        )
    assert by_file.exit_code == 0 and by_env.exit_code == 0, (by_file.output, by_env.output)
    assert [call.authorization for call in k8s.state.calls] == [
        "Bearer from-a-file-0123",
        "Bearer from-the-env-4567",
    ]
    both = _error([*base, "--token", "x", "--token-file", str(token_file)])
    assert "give one of them" in both


def test_a_bugs_traceback_is_printed_with_credentials_masked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from catsdogs.cli import app as cli
    from catsdogs.pipelines import compile as compiler

    def bug(*args, **kwargs):
        raise RuntimeError(f"unexpected answer from https://alice:{PASSWORD}@example.com/x")

    monkeypatch.setattr(compiler, "compile_pipeline", bug)
    argv = ["catsdogs", "compile", "--output", str(tmp_path / "p.yaml"), "--allow-tag"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 1
    stderr = capsys.readouterr().err
    assert "Traceback (most recent call last)" in stderr and "RuntimeError" in stderr
    assert PASSWORD not in stderr and "https://***@example.com/x" in stderr
