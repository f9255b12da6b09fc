"""The one redaction of secrets in text: every message, log line and record that can hold a URL.

``redact(text)`` replaces by ``***``:

- the user information of any URL (``https://user:password@host/`` -> ``https://***@host/``);
- the values of query parameters that carry secrets: signed-URL signatures and credentials
  (``X-Goog-Signature``, ``X-Goog-Credential``, ``X-Amz-Signature``, ``X-Amz-Security-Token``,
  Azure's ``sig``), tokens, keys, passwords, sessions;
- ``Bearer <token>`` (an ``Authorization`` header quoted in an error);
- every secret value registered with ``register`` (a token read from the environment or a file),
  wherever it appears.

Used by the CLI for every error line and traceback it prints, by ``catsdogs run`` for its task
logs, ``run.json`` and summary, and by ``prepare`` for its manifest, report and errors.
"""

from __future__ import annotations

import re
import threading

MASK = "***"
# Everything between "://" and the last "@" of the authority (a password may hold "@").
_USERINFO = re.compile(r"(?<=://)[^/?#\s\"'<>]*@")
_SECRET_PARAMETER = re.compile(
    r"([?&;][^=&#\s]*(?:sig|credential|token|key|secret|password|passwd|auth|session)[^=&#\s]*=)"
    r"[^&#\s\"'<>]*",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_MIN_SECRET = 4  # shorter values would mask ordinary words
_secrets: set[str] = set()
_lock = threading.Lock()


def register(secret: str | None) -> None:
    """Remember a secret value (a token) so that ``redact`` masks it wherever it appears."""
    if secret and len(secret.strip()) >= _MIN_SECRET:
        with _lock:
            _secrets.add(secret.strip())


def redact(text: str) -> str:
    """``text`` with the credentials of any URL in it, and every registered secret, masked."""
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        text = text.replace(secret, MASK)
    text = _USERINFO.sub(MASK + "@", text)
    text = _SECRET_PARAMETER.sub(r"\1" + MASK, text)
    return _BEARER.sub(r"\1" + MASK, text)


def has_secret(text: str) -> bool:
    """Whether ``redact`` would change ``text`` (it holds credentials or a registered secret)."""
    return redact(text) != text


def redact_record(value: object) -> object:
    """A JSON-ready value (dicts, lists, strings...) with every string in it redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_record(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_record(item) for item in value]
    return value
