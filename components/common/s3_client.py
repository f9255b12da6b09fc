"""The S3 client of ``s3`` and what turns its errors into clear ones (kept apart for size).

``client()`` is boto3's S3 client for ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (MinIO; unset:
Amazon S3), with path-style addressing when an endpoint is set and botocore's ``standard`` retry
mode (10 attempts) unless ``AWS_RETRY_MODE``/``AWS_MAX_ATTEMPTS`` choose otherwise. ``errors``
maps botocore's exceptions: a failed ``If-None-Match``/``If-Match`` precondition becomes
``PreconditionFailedError``, a missing bucket, a refused permission or missing credentials a
``StorageError`` that names the URI and the fix, a missing object ``FileNotFoundError``.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Any

from catsdogs.components.common import config
from catsdogs.components.common.errors import (
    CredentialsError,
    PreconditionFailedError,
    StorageError,
)

S3_SCHEME = "s3://"
TRANSFER_WORKERS = 8
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_DENIED = {"403", "AccessDenied", "Forbidden", "AllAccessDisabled"}
_BAD_CREDENTIALS = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
# 409 ConditionalRequestConflict: another conditional write of the same key was in flight.
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
CREDENTIALS_FIX = (
    "Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (MinIO: its access and secret key, and "
    "AWS_ENDPOINT_URL to its address), use a shared credentials file (AWS_PROFILE), or on EKS "
    "give the pod's service account an IAM role (docs/storage.md)."
)


def is_s3(uri: str | os.PathLike[str]) -> bool:
    """Whether ``uri`` names an S3 (or MinIO) location."""
    return str(uri).startswith(S3_SCHEME)


def split_s3(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/some/prefix`` into ``("bucket", "some/prefix")``."""
    if not is_s3(uri):
        raise ValueError(f"Expected an s3://bucket/path URI, got {uri!r}.")
    bucket, _, name = uri[len(S3_SCHEME) :].partition("/")
    if not bucket:
        raise ValueError(f"Expected an s3://bucket/path URI with a bucket name, got {uri!r}.")
    return bucket, name


@functools.cache
def client() -> Any:
    """The process's boto3 S3 client (created on first use; boto3 clients are thread-safe).

    Raises:
        CredentialsError: ``AWS_ENDPOINT_URL`` names an endpoint that accepts no connection (else
            botocore would retry the refused connections for minutes).
    """
    import boto3
    from botocore.config import Config

    endpoint = config.s3_endpoint()
    if endpoint:
        _check_endpoint(endpoint)
    options: dict[str, Any] = {
        "max_pool_connections": 2 * TRANSFER_WORKERS,
        "connect_timeout": 10,
        "read_timeout": 120,
    }
    if not config.s3_retry_configured():
        options["retries"] = {"mode": "standard", "max_attempts": 10}
    if endpoint:  # MinIO & co.: bucket.host names do not resolve, the bucket goes in the path
        options["s3"] = {"addressing_style": "path"}
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=Config(**options))


def _check_endpoint(endpoint: str) -> None:
    """Refuse at once an endpoint that does not accept connections."""
    import socket
    import urllib.parse

    url = urllib.parse.urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), 3.0).close()
    except OSError as error:
        raise CredentialsError(
            f"nothing answers at AWS_ENDPOINT_URL={endpoint} ({error.strerror or error}). Start "
            "the S3 server (MinIO) or fix the endpoint (in-cluster MinIO on Kubeflow: "
            "http://minio-service.kubeflow:9000)."
        ) from error


def reset_client() -> None:
    """Forget the cached client (tests point ``AWS_ENDPOINT_URL_S3`` at a new server)."""
    client.cache_clear()


def code(error: Any) -> str:
    """The S3 error code of a botocore ClientError (``""`` for other errors)."""
    return str(getattr(error, "response", {}).get("Error", {}).get("Code", ""))


def where() -> str:
    """The S3 endpoint in use, for messages."""
    return config.s3_endpoint() or "Amazon S3"


@contextlib.contextmanager
def errors(uri: str, action: str) -> Iterator[None]:
    """Turn botocore's errors for a missing bucket, permission or credentials into clear ones."""
    from botocore import exceptions as bexc

    try:
        yield
    except CredentialsError as error:
        if uri in str(error):
            raise
        raise CredentialsError(f"Could not {action} {uri}: {error}") from error.__cause__
    except bexc.ClientError as error:
        found = code(error)
        if found in _CONFLICT:
            raise PreconditionFailedError(
                f"Could not {action} {uri}: it was changed by someone else (ETag precondition "
                "failed). Re-read it and try again."
            ) from error
        bucket, _ = split_s3(uri)
        if found == "NoSuchBucket" or (found in _NOT_FOUND and not bucket_exists(bucket)):
            raise StorageError(
                f"Could not {action} {uri}: bucket s3://{bucket} does not exist on {where()}. "
                f"Create it (aws s3 mb s3://{bucket}, or mc mb for MinIO) or fix the URI."
            ) from error
        if found in _NOT_FOUND:
            raise FileNotFoundError(f"Could not {action} {uri}: no such object.") from error
        if found in _DENIED:
            raise StorageError(
                f"Could not {action} {uri}: permission denied ({found}). Give the credentials "
                "this job runs with read and write access to the bucket (s3:GetObject, "
                f"s3:PutObject, s3:DeleteObject, s3:ListBucket). {CREDENTIALS_FIX}"
            ) from error
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if status >= 500 or status == 429:  # still failing after botocore's retries
            raise StorageError(
                f"Could not {action} {uri}: {where()} kept answering {status} {found} through "
                "every retry. Try again later; raise AWS_MAX_ATTEMPTS if the store is overloaded."
            ) from error
        if found in _BAD_CREDENTIALS:
            raise CredentialsError(
                f"Could not {action} {uri}: the credentials were refused ({found}). {CREDENTIALS_FIX}"
            ) from error
        raise
    except bexc.NoCredentialsError as error:
        raise CredentialsError(
            f"Could not {action} {uri}: no S3 credentials found. {CREDENTIALS_FIX}"
        ) from error
    except (bexc.ConnectionError, bexc.HTTPClientError) as error:  # refused, reset, timed out
        raise CredentialsError(
            f"Could not {action} {uri}: no answer from {where()} after retrying "
            f"({type(error).__name__}: {error}). "
            "Check AWS_ENDPOINT_URL (MinIO: e.g. http://minio-service.kubeflow:9000) and the network."
        ) from error


def bucket_exists(bucket: str) -> bool:
    """Whether ``bucket`` exists (403: it exists, we may not see it)."""
    from botocore import exceptions as bexc

    try:
        client().head_bucket(Bucket=bucket)
    except bexc.ClientError as error:
        return code(error) not in _NOT_FOUND | {"NoSuchBucket"}  # 403: it exists, not ours
    return True


def key(uri: str) -> tuple[str, str]:
    """The bucket and object key of an s3:// object URI."""
    bucket, name = split_s3(uri)
    if not name:
        raise ValueError(f"Expected an object path after the bucket in {uri!r}.")
    return bucket, name


def folder(uri: str) -> tuple[str, str]:
    """The bucket and the key prefix (``""`` or ending in ``/``) of an s3:// folder."""
    bucket, name = split_s3(uri)
    return bucket, (name.rstrip("/") + "/" if name else "")
