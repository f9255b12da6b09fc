"""Storage errors a new user meets first, through the real CLI: one line naming the URI and the fix.

Every command runs as a subprocess with a clean environment: no ``STORAGE_EMULATOR_HOST`` (unless
the test is about it), no Google credentials, ``GCE_METADATA_HOST``/``GCE_METADATA_IP`` at
127.0.0.1 and ``NO_GCE_CHECK=True``, so google-auth's metadata-server probe never leaves loopback
(google-auth 2.63: ``compute_engine/_metadata.py`` reads those variables at import time, which is
why a subprocess and not ``monkeypatch``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from tests.loopback_server import LoopbackServer

FIX_WORDS = (
    "gcloud auth application-default login",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "Workload Identity",
)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GOOGLE_", "GCLOUD", "CLOUDSDK", "STORAGE_EMULATOR", "GCE_"))
    }
    env.update(
        HOME=str(tmp_path / "home"),
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),  # no application_default_credentials.json
        GCE_METADATA_HOST="127.0.0.1",
        GCE_METADATA_IP="127.0.0.1",
        NO_GCE_CHECK="True",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    env.update(extra)
    return env


def _catsdogs(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "catsdogs.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


def test_prepare_to_gcs_without_credentials_names_the_fix(tmp_path: Path) -> None:
    # The default source is a download: the output is checked before it starts.
    line = _one_line_error(_catsdogs(_env(tmp_path), "prepare", "--output", "gs://b/x"))
    assert "gs://b/x" in line
    assert "no usable Google Cloud credentials" in line
    for words in FIX_WORDS:
        assert words in line


def test_prepare_from_gcs_without_credentials_names_the_fix(tmp_path: Path) -> None:
    result = _catsdogs(
        _env(tmp_path), "prepare", "--source", "gs://b/raw", "--output", str(tmp_path / "out")
    )
    line = _one_line_error(result)
    assert "gs://b/raw" in line
    for words in FIX_WORDS:
        assert words in line
    assert not (tmp_path / "out").exists()


def test_credentials_file_that_does_not_exist(tmp_path: Path) -> None:
    env = _env(tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path / "key.json"))
    line = _one_line_error(_catsdogs(env, "prepare", "--output", "gs://b/x"))
    assert f"{tmp_path / 'key.json'} was not found" in line
    assert "GOOGLE_APPLICATION_CREDENTIALS" in line


class _RevokedTokenEndpoint(BaseHTTPRequestHandler):
    """Google's OAuth token endpoint answering a refresh with an expired/revoked refresh token."""

    def do_POST(self) -> None:  # noqa: N802 - the http.server API
        body = json.dumps(
            {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
        ).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def _service_account_key(path: Path, token_uri: str) -> None:
    """A service-account key file (a fresh RSA key) whose token endpoint is ``token_uri``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "1",
        "private_key": pem,
        "client_email": "trainer@p.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    path.write_text(json.dumps(info))


def test_expired_credentials_name_the_fix(tmp_path: Path) -> None:
    # A key that Google no longer accepts (deleted, disabled or expired): google-auth exchanges it
    # for a token before the first request (google/oauth2/service_account.py, google-auth 2.63)
    # at the token_uri the key file names, here a loopback server that answers as Google's does.
    # (An authorized_user file cannot be pointed elsewhere: google-auth always overrides its
    # token_uri with Google's endpoint.)
    with LoopbackServer(_RevokedTokenEndpoint) as server:
        key = tmp_path / "key.json"
        _service_account_key(key, f"{server.url}/token")
        env = _env(tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(key))
        line = _one_line_error(_catsdogs(env, "prepare", "--output", "gs://b/x"))
    assert "gs://b/x" in line
    assert "refused or have expired" in line
    assert "invalid_grant" in line
    assert "gcloud auth application-default login" in line


def test_unreachable_emulator_fails_at_once(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = _env(tmp_path, STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{port}")
    line = _one_line_error(_catsdogs(env, "prepare", "--output", "gs://b/x"))
    assert f"STORAGE_EMULATOR_HOST=http://127.0.0.1:{port}" in line
    assert "does not accept connections" in line


@pytest.mark.gcs
def test_missing_bucket_before_any_work(tmp_path: Path, gcs_server: str) -> None:
    env = _env(tmp_path, STORAGE_EMULATOR_HOST=gcs_server)
    line = _one_line_error(_catsdogs(env, "prepare", "--output", "gs://no-such-bucket-fh/x"))
    assert "gs://no-such-bucket-fh/x" in line
    assert "bucket gs://no-such-bucket-fh does not exist" in line
    assert "gcloud storage buckets create gs://no-such-bucket-fh" in line


def _s3_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No AWS credentials anywhere (env, shared files, instance metadata), plus ``extra``."""
    env = {k: v for k, v in _env(tmp_path).items() if not k.startswith("AWS_")}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_DEFAULT_REGION="us-east-1",
    )
    env.update(extra)
    return env


@pytest.mark.s3
def test_s3_without_credentials_names_the_fix(tmp_path: Path, s3_server: str) -> None:
    env = _s3_env(tmp_path, AWS_ENDPOINT_URL=s3_server)
    line = _one_line_error(_catsdogs(env, "prepare", "--output", "s3://b/x"))
    assert "s3://b/x" in line and "no S3 credentials found" in line
    assert "AWS_ACCESS_KEY_ID" in line and "AWS_ENDPOINT_URL" in line


def test_unreachable_s3_endpoint_fails_at_once(tmp_path: Path) -> None:
    import socket
    import time

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = _s3_env(
        tmp_path,
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
        AWS_ACCESS_KEY_ID="minio",
        AWS_SECRET_ACCESS_KEY="minio123",
    )
    start = time.monotonic()
    line = _one_line_error(_catsdogs(env, "prepare", "--output", "s3://b/x"))
    assert f"nothing answers at AWS_ENDPOINT_URL=http://127.0.0.1:{port}" in line
    assert time.monotonic() - start < 60  # not minutes of retries


@pytest.mark.s3
def test_missing_s3_bucket_before_any_work(tmp_path: Path, s3_server: str) -> None:
    from tests.conftest import S3_ENV

    env = _s3_env(tmp_path, **S3_ENV, AWS_ENDPOINT_URL_S3=s3_server)
    line = _one_line_error(_catsdogs(env, "prepare", "--output", "s3://no-such-bucket-fh/x"))
    assert "bucket s3://no-such-bucket-fh does not exist" in line
    assert "aws s3 mb s3://no-such-bucket-fh" in line
