"""How gs:// calls retry, and the one line for an endpoint that cannot be reached or keeps failing.

google-cloud-storage 3.17.1 (``google/cloud/storage/retry.py``: ``DEFAULT_RETRY``,
``_should_retry``) retries connection errors, 408, 429 and 5xx for 120 s. ``policy`` keeps that
choice of what is transient, with ``config.storage_retry_seconds()`` as the deadline, and gives
up on an endpoint that no connection can be made to (a name that does not resolve, a refused or
timed-out connection) after ``config.storage_unreachable_seconds()``; a connection reset in the
middle of a request stays transient. ``raise_if_unavailable`` turns what is left after the
retries into a ``StorageError`` naming the URI, the endpoint and the fix.
"""

from __future__ import annotations

import time
from typing import Any

from catsdogs.components.common.errors import StorageError


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def policy() -> Any:
    """The library's ``DEFAULT_RETRY``, with our deadline, giving up early when nothing connects.

    google-cloud-storage 3.17.1 (``google/cloud/storage/retry.py``) retries connection errors,
    408, 429 and 5xx for 120 s. Here the deadline is ``config.storage_retry_seconds()`` and an
    endpoint that cannot be connected to at all (a name that does not resolve, a refused or
    timed-out connection) is retried for ``config.storage_unreachable_seconds()`` only.
    """
    from catsdogs.components.common import config
    from google.cloud.storage.retry import DEFAULT_RETRY

    retryable = DEFAULT_RETRY._predicate  # the library's own choice of what is transient
    budget = config.storage_unreachable_seconds()
    first_failure: list[float] = []

    def predicate(error: Exception) -> bool:
        if not _cannot_connect(error):
            return bool(retryable(error))
        if not first_failure:
            first_failure.append(time.monotonic())
        return time.monotonic() - first_failure[0] < budget

    return DEFAULT_RETRY.with_predicate(predicate).with_timeout(config.storage_retry_seconds())


def upload(call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call`` (an upload) retried by ``policy()`` itself, the library's own retry off.

    google-cloud-storage 2.19 hands an upload's retry to google-resumable-media
    (``blob._api_core_retry_to_resumable_media_retry``), which keeps its deadline but not its
    predicate: an endpoint that refuses every connection was retried for a minute, not
    ``config.storage_unreachable_seconds()``.
    """
    return policy()(call)(*args, retry=None, **kwargs)


def _cannot_connect(error: BaseException) -> bool:
    """Whether ``error`` is a connection that could not be made (not one broken mid-request)."""
    import requests
    import urllib3

    seen: BaseException | None = error
    for _ in range(6):  # requests.ConnectionError(MaxRetryError(reason=NewConnectionError)), ...
        if seen is None:
            return False
        if isinstance(
            seen,
            (
                requests.exceptions.ConnectTimeout,
                urllib3.exceptions.NewConnectionError,
                urllib3.exceptions.ConnectTimeoutError,
            ),
        ):
            return True
        inner = getattr(seen, "reason", None)
        if not isinstance(inner, BaseException) and seen.args:
            inner = seen.args[0] if isinstance(seen.args[0], BaseException) else None
        seen = inner or seen.__cause__
    return False


def _endpoint() -> str:
    from catsdogs.components.common import config

    return config.storage_emulator_host() or "storage.googleapis.com"


def _server_error(error: BaseException) -> BaseException | None:
    """The 5xx/429 answer behind ``error`` (itself or the last retried one), if that is what it is."""
    from google.api_core import exceptions as gexc

    found = getattr(error, "cause", None) if isinstance(error, gexc.RetryError) else error
    code = getattr(found, "code", None)
    if isinstance(found, gexc.GoogleAPICallError) and (code == 429 or (code or 0) >= 500):
        return found
    response = getattr(found, "response", None)  # google.resumable_media's InvalidResponse
    status = getattr(response, "status_code", 0) or 0
    return found if found is not None and (status == 429 or status >= 500) else None


def _innermost(error: BaseException) -> BaseException:
    """The error at the bottom of ``error``'s chain of wrappers (the one that names the cause)."""
    seen = error
    for _ in range(6):
        inner = getattr(seen, "reason", None) or getattr(seen, "cause", None) or seen.__cause__
        if not isinstance(inner, BaseException) and seen.args:
            inner = seen.args[0]
        if not isinstance(inner, BaseException):
            break
        seen = inner
    return seen


def _status(answer: BaseException) -> str:
    """``503 (message)`` of an HTTP error answer (api_core's errors or resumable-media's)."""
    code = getattr(answer, "code", None) or getattr(
        getattr(answer, "response", None), "status_code", "?"
    )
    message = getattr(answer, "message", "") if hasattr(answer, "code") else ""
    return f"{code} ({message})" if message else str(code)


def raise_if_unavailable(error: BaseException, uri: str, action: str) -> None:
    """Raise one line for an endpoint that could not be connected to or kept answering 5xx/429.

    Raises:
        StorageError: That is what ``error`` is (after the retries ``_retry`` allows).
    """
    import requests
    from catsdogs.components.common import config

    if _cannot_connect(error) or _cannot_connect(getattr(error, "cause", None) or error):
        raise StorageError(
            f"Could not {action} {uri}: cannot connect to the storage endpoint {_endpoint()} "
            f"(gave up after {config.storage_unreachable_seconds():.0f} s: "
            f"{_first_line(_innermost(error))}). Check the network, proxy and DNS settings (or "
            "STORAGE_EMULATOR_HOST), then run it again."
        ) from error
    if (answer := _server_error(error)) is not None:
        raise StorageError(
            f"Could not {action} {uri}: the storage service kept answering {_status(answer)} "
            f"through {config.storage_retry_seconds():.0f} s of retries. "
            "It is overloaded or down: run it again later (nothing half-written is kept)."
        ) from error
    if isinstance(error, requests.exceptions.RequestException):
        raise StorageError(
            f"Could not {action} {uri}: the connection to {_endpoint()} failed "
            f"({type(error).__name__}: {_first_line(error)}). Check the network and run it again."
        ) from error
