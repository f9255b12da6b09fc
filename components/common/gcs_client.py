"""The process's Google Cloud Storage client, and the one-line errors of getting one.

Missing, expired or refused Google credentials and an unreachable storage emulator end in a
``CredentialsError`` naming the fix (``CREDENTIALS_FIX``), never in google-auth's traceback.
``gcs`` makes every call through ``client()``.
"""

from __future__ import annotations

import functools
from typing import Any

from catsdogs.components.common.errors import CredentialsError

_EMULATOR_CONNECT_SECONDS = 3.0
# How to give this process Google credentials (docs/cluster.md#storage-credentials).
CREDENTIALS_FIX = (
    "Run `gcloud auth application-default login` (your own account), set "
    "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, or on GKE bind the pod's "
    "Kubernetes service account to a Google service account with Workload Identity "
    "(docs/cluster.md#storage-credentials)."
)


@functools.cache
def client() -> Any:
    """The process's ``google.cloud.storage.Client`` (created on first use).

    Raises:
        CredentialsError: No Google credentials were found, or ``STORAGE_EMULATOR_HOST`` names an
            endpoint that does not accept connections.
    """
    import logging

    from catsdogs.components.common import config
    from google.auth import exceptions as auth_exceptions
    from google.cloud import storage

    if emulator := config.storage_emulator_host():
        _check_emulator(emulator)
    # google.auth.default() logs a WARNING line of its own for each source it tried in vain (the
    # metadata server, google/auth/_default.py, google-auth 2.63); the error below says it all.
    auth_log = logging.getLogger("google.auth._default")
    level = auth_log.level
    auth_log.setLevel(logging.ERROR)
    try:
        return storage.Client(project=config.gcp_project())
    except auth_exceptions.DefaultCredentialsError as error:
        raise CredentialsError(
            f"No usable Google Cloud credentials ({_first_sentence(error)}). {CREDENTIALS_FIX}"
        ) from error
    finally:
        auth_log.setLevel(level)


def _check_emulator(endpoint: str) -> None:
    """Refuse at once an emulator that does not accept connections (else: 120 s of retries)."""
    import socket
    import urllib.parse

    url = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), _EMULATOR_CONNECT_SECONDS).close()
    except OSError as error:
        raise CredentialsError(
            f"The storage emulator at STORAGE_EMULATOR_HOST={endpoint} does not accept "
            f"connections ({error.strerror or error}). Start it (e.g. fake-gcs-server), or unset "
            "STORAGE_EMULATOR_HOST to use Google Cloud Storage."
        ) from error


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _first_sentence(error: BaseException) -> str:
    """google-auth's first sentence (its second points at the docs our fix replaces)."""
    text = _first_line(error)
    return text.split(". ", 1)[0].rstrip(".")


def _client(uri: str) -> Any:
    """``client()``, with a credentials error that names ``uri``."""
    try:
        return client()
    except CredentialsError as error:
        text = str(error)
        raise CredentialsError(
            f"Could not reach {uri}: {text[:1].lower()}{text[1:]}"
        ) from error.__cause__


def reset_client() -> None:
    """Forget the cached client (tests point ``STORAGE_EMULATOR_HOST`` at a new server)."""
    client.cache_clear()
