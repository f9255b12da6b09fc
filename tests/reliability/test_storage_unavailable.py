"""Storage that stops answering or only answers 503: one line, soon, and nothing half-written.

An unreachable endpoint used to be retried for the library's full 120 s and end in a traceback;
an export whose uploads kept getting 503 ended in a traceback too.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from catsdogs.components.common import storage
from catsdogs.components.serve import export
from typer.testing import CliRunner

from tests.reliability.fault_proxy import FaultProxy, storage_through

pytestmark = pytest.mark.gcs


class _UploadsGet503(FaultProxy):
    """Everything goes through, except uploads: those are answered 503, always."""

    def decide(self, method: str, path: str, body: bytes, headers=None) -> str:
        return "503" if path.startswith("/upload/") else "forward"


def _saved_model(folder: Path) -> Path:
    for name in ("saved_model.pb", "variables/variables.index", "variables/variables.data"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"1" * 2048)
    return folder


def _promote_line(promotable: dict, champion: str) -> str:
    from catsdogs.cli.app import app

    model, evaluation = promotable["first"]
    result = CliRunner().invoke(
        app,
        ["promote", "--model", model, "--evaluation", evaluation, "--data", promotable["data"],
         "--champion", champion],
    )  # fmt: skip
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_a_persistent_503_on_export_is_one_line_and_leaves_no_version(
    gcs_server: str, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, promotable
) -> None:
    monkeypatch.setenv("CATSDOGS_STORAGE_RETRY_SECONDS", "2")
    saved = _saved_model(tmp_path / "saved")
    with storage_through(_UploadsGet503(gcs_server)) as proxy:
        started = time.monotonic()
        with pytest.raises(storage.StorageError, match="kept answering 503") as caught:
            export.publish(saved, f"{bucket}/serving/1")
        assert time.monotonic() - started < 30
        assert "run it again later" in str(caught.value)
        line = _promote_line(promotable, f"{bucket}/champion")
        assert "kept answering 503" in line, line
        assert proxy.counts["503"] >= 2, proxy.counts  # it did retry
    assert not storage.exists(f"{bucket}/serving/1/saved_model.pb")
    assert not storage.exists(f"{bucket}/champion/champion.json")


def test_an_unreachable_endpoint_fails_fast_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, promotable
) -> None:
    import socket

    from catsdogs.components.common import gcs, gcs_client

    with socket.socket() as sock:  # a port nothing listens on: connections are refused
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", dead)
    monkeypatch.setenv("CATSDOGS_STORAGE_UNREACHABLE_SECONDS", "1")
    # As with Google Cloud Storage itself (no emulator): nothing checks the endpoint before the
    # first call, whose retries meet the refused connections.
    monkeypatch.setattr(gcs_client, "_check_emulator", lambda endpoint: None)
    gcs.reset_client()
    try:
        started = time.monotonic()
        with pytest.raises(storage.StorageError, match="cannot connect to the storage endpoint"):
            storage.write_text("gs://somewhere/after", "lost?")
        assert time.monotonic() - started < 20
        line = _promote_line(promotable, "gs://somewhere/champion")
        assert "cannot connect to the storage endpoint" in line and dead in line, line
    finally:
        gcs.reset_client()
