"""The gs:// side of ``storage``: Google Cloud Storage objects through ``google-cloud-storage``.

``storage`` is the API every component calls; it sends gs:// URIs here. This module holds the
client, the object and listing calls, and what makes them reliable:

- Every call retries transient errors with the library's default retry policy, within the
  deadline and the shorter budget for an unreachable endpoint of ``gcs_retry``, whose errors
  left after the retries end in one line.
- A missing bucket or a permission problem fails fast with a ``StorageError`` that names the URI
  and the fix; a failed generation precondition is a ``PreconditionFailedError``.
- Missing, expired or refused Google credentials (the client: ``gcs_client``), an unreachable storage emulator and an endpoint
  that stays unreachable through the retries end in a ``CredentialsError`` (one line naming the URI
  and the fix: ``gcloud auth application-default login``, ``GOOGLE_APPLICATION_CREDENTIALS`` or
  Workload Identity on GKE), never in google-auth's traceback.
- A conditional write (create-only or compare-and-swap) whose response is lost is not taken for
  a conflict: the client's retry then fails the precondition against the write's own first attempt.
  Each such write carries a unique id in the object's metadata, and after a precondition failure
  the object is read back: when it carries that id, the write succeeded.
- Downloads are verified with crc32c; folder transfers run in parallel through the library's
  transfer manager.

The library is imported inside the functions, so local-only runs never load it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catsdogs.components.common import gcs_retry, tempdirs
from catsdogs.components.common.errors import (
    AlreadyExistsError,
    CredentialsError,
    PreconditionFailedError,
    StorageError,
)
from catsdogs.components.common.gcs_client import CREDENTIALS_FIX, _client, _first_line
from catsdogs.components.common.gcs_client import client as client  # the API, re-exported
from catsdogs.components.common.gcs_client import reset_client as reset_client

GCS_SCHEME = "gs://"
_TRANSFER_WORKERS = 8
WRITE_ID = "catsdogs-write-id"  # object metadata: which conditional write created the object


@dataclass(frozen=True)
class ObjectInfo:
    """What ``stat`` knows about one file or object."""

    uri: str
    size: int
    generation: int | str | None  # version token: GCS generation, S3 ETag; None for local files


def is_gcs(uri: str | os.PathLike[str]) -> bool:
    """Whether ``uri`` names a Google Cloud Storage location."""
    return str(uri).startswith(GCS_SCHEME)


def split_gcs(uri: str) -> tuple[str, str]:
    """Split ``gs://bucket/some/prefix`` into ``("bucket", "some/prefix")``."""
    if not is_gcs(uri):
        raise ValueError(f"Expected a gs://bucket/path URI, got {uri!r}.")
    rest = uri[len(GCS_SCHEME) :]
    bucket, _, name = rest.partition("/")
    if not bucket:
        raise ValueError(f"Expected a gs://bucket/path URI with a bucket name, got {uri!r}.")
    return bucket, name


def _retry() -> Any:
    """The retry policy of every call (``gcs_retry.policy``: our deadline, unreachable endpoints)."""
    return gcs_retry.policy()


@contextlib.contextmanager
def _errors(uri: str, action: str) -> Iterator[None]:
    """Turn the library's errors for a missing bucket or missing permission into clear ones."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exceptions

    try:
        try:
            yield
        except Exception as error:
            gcs_retry.raise_if_unavailable(error, uri, action)  # nothing answers, or only 5xx
            raise
    except auth_exceptions.RefreshError as error:
        raise CredentialsError(
            f"Could not {action} {uri}: the Google Cloud credentials were refused or have expired "
            f"({_first_line(error)}). {CREDENTIALS_FIX}"
        ) from error
    except (auth_exceptions.TransportError, gexc.RetryError) as error:
        cause = getattr(error, "cause", None) or error
        raise CredentialsError(
            f"Could not {action} {uri}: no answer from Google Cloud Storage or the credentials "
            f"server after retrying ({type(cause).__name__}: {_first_line(cause)}). Check the "
            f"network and proxy settings; on GKE, check that the metadata server answers "
            f"(Workload Identity). {CREDENTIALS_FIX}"
        ) from error
    except gexc.PreconditionFailed as error:
        raise PreconditionFailedError(
            f"Could not {action} {uri}: it was changed by someone else (generation precondition "
            "failed). Re-read it and try again."
        ) from error
    except gexc.NotFound as error:
        bucket, _ = split_gcs(uri)
        if "bucket" in str(error).lower() or not _bucket_exists(bucket):
            raise StorageError(
                f"Could not {action} {uri}: bucket gs://{bucket} does not exist. Create it "
                f"(gcloud storage buckets create gs://{bucket}) or fix the URI."
            ) from error
        raise FileNotFoundError(f"Could not {action} {uri}: no such object.") from error
    except gexc.Forbidden as error:
        raise StorageError(
            f"Could not {action} {uri}: permission denied ({error.message}). Grant the account "
            "running this job access to the bucket (roles/storage.objectAdmin), or check the "
            "credentials (GOOGLE_APPLICATION_CREDENTIALS / workload identity)."
        ) from error
    except gexc.Unauthorized as error:
        raise CredentialsError(
            f"Could not {action} {uri}: not authenticated ({error.message}). {CREDENTIALS_FIX}"
        ) from error


def _bucket_exists(bucket: str, uri: str = "") -> bool:
    from google.api_core import exceptions as gexc

    try:
        return bool(_client(uri or f"gs://{bucket}").bucket(bucket).exists(retry=_retry()))
    except gexc.Forbidden:
        return True  # it exists, we just cannot see its metadata


def check_bucket(uri: str) -> None:
    """Fail fast, before any work, when ``uri`` cannot be used: no credentials, bucket or network.

    Raises:
        CredentialsError: No usable credentials, or no answer from the endpoint.
        StorageError: The bucket does not exist, or access to it is denied.
    """
    bucket, _ = split_gcs(uri)
    with _errors(uri, "reach"):
        if not _bucket_exists(bucket, uri):
            raise StorageError(
                f"Could not reach {uri}: bucket gs://{bucket} does not exist. Create it "
                f"(gcloud storage buckets create gs://{bucket}) or fix the URI."
            )


def _blob(uri: str) -> Any:
    bucket, name = split_gcs(uri)
    if not name:
        raise ValueError(f"Expected an object path after the bucket in {uri!r}.")
    return _client(uri).bucket(bucket).blob(name)


def _folder(uri: str) -> tuple[str, str]:
    """The bucket and the object-name prefix (``""`` or ending in ``/``) of a gs:// folder."""
    bucket, name = split_gcs(uri)
    return bucket, (name.rstrip("/") + "/" if name else "")


# ---------------------------------------------------------------- single objects


def exists(uri: str) -> bool:
    """Whether an object exists at ``uri`` (StorageError when its bucket does not)."""
    with _errors(uri, "check"):
        if _blob(uri).exists(retry=_retry()):
            return True
        if not _bucket_exists(split_gcs(uri)[0]):
            raise StorageError(
                f"Could not check {uri}: bucket gs://{split_gcs(uri)[0]} does not exist. "
                "Create it or fix the URI."
            )
    return False


def is_dir(uri: str) -> bool:
    """Whether the prefix ``uri`` holds at least one object."""
    bucket, prefix = _folder(uri)
    with _errors(uri, "list"):
        blobs = _client(uri).list_blobs(bucket, prefix=prefix, max_results=1, retry=_retry())
        return any(True for _ in blobs)


def stat(uri: str) -> ObjectInfo:
    """Size and generation of one object; FileNotFoundError when missing."""
    blob = _blob(uri)
    with _errors(uri, "read"):
        blob.reload(retry=_retry())
    return ObjectInfo(uri=uri, size=int(blob.size), generation=int(blob.generation))


def read_bytes(uri: str) -> bytes:
    """The whole content of an object, crc32c-verified."""
    with _errors(uri, "read"):
        return bytes(_blob(uri).download_as_bytes(checksum="crc32c", retry=_retry()))


def write_bytes(
    uri: str,
    data: bytes,
    *,
    if_absent: bool,
    if_generation_match: int | None,
    content_type: str | None,
) -> None:
    """Upload ``data`` to ``uri``; the options are ``storage.write_bytes``'s."""
    generation = 0 if if_absent else if_generation_match
    blob = _blob(uri)
    write_id = _tag(blob) if generation is not None else None
    try:
        with _errors(uri, "write"):
            gcs_retry.upload(
                blob.upload_from_string,
                data,
                content_type=content_type or "application/octet-stream",
                if_generation_match=generation,
            )
    except PreconditionFailedError as error:
        if write_id and _written_by(uri, write_id):
            return  # our first attempt landed; only its response was lost
        if if_absent:
            raise AlreadyExistsError(
                f"Refusing to overwrite {uri}: it already exists. Choose another output location "
                "or delete the existing object first."
            ) from error
        raise


def _tag(blob: Any) -> str:
    """Give a conditional write a unique id (in the object's metadata) and return it."""
    write_id = uuid.uuid4().hex
    blob.metadata = {**(blob.metadata or {}), WRITE_ID: write_id}
    return write_id


def _written_by(uri: str, write_id: str) -> bool:
    """Whether the object at ``uri`` is the one that the write ``write_id`` created."""
    blob = _blob(uri)
    try:
        with _errors(uri, "read"):
            blob.reload(retry=_retry())
    except FileNotFoundError:
        return False
    return bool((blob.metadata or {}).get(WRITE_ID) == write_id)


def delete(uri: str, *, if_generation_match: int | None = None) -> None:
    """Delete one object (missing is not an error)."""
    from google.api_core import exceptions as gexc

    try:
        with _errors(uri, "delete"):
            _blob(uri).delete(if_generation_match=if_generation_match, retry=_retry())
    except (FileNotFoundError, gexc.NotFound):
        pass


def upload_file(local_path: str | os.PathLike[str], uri: str, *, if_absent: bool) -> None:
    """Upload one local file to the object ``uri`` (create-only with ``if_absent``)."""
    blob = _blob(uri)
    write_id = _tag(blob) if if_absent else None
    try:
        with _errors(uri, "write"):
            gcs_retry.upload(
                blob.upload_from_filename,
                str(local_path),
                if_generation_match=0 if if_absent else None,
            )
    except PreconditionFailedError as error:
        if write_id and _written_by(uri, write_id):
            return  # our first attempt landed; only its response was lost
        raise AlreadyExistsError(f"Refusing to overwrite {uri}: it already exists.") from error


def download_file(uri: str, local_path: Path) -> None:
    """Download one object to ``local_path``, crc32c-verified (no rename: the caller's job)."""
    with _errors(uri, "read"):
        _blob(uri).download_to_filename(str(local_path), checksum="crc32c", retry=_retry())


# ---------------------------------------------------------------- listings and whole folders


def list_files(uri: str) -> list[str]:
    """Relative names (sorted) of every object below the prefix ``uri``."""
    bucket, prefix = _folder(uri)
    with _errors(uri, "list"):
        names = [
            blob.name[len(prefix) :]
            for blob in _client(uri).list_blobs(bucket, prefix=prefix, retry=_retry())
            if not blob.name.endswith("/")
        ]
        if not names and not _bucket_exists(bucket):
            raise StorageError(
                f"Could not list {uri}: bucket gs://{bucket} does not exist. Create it or fix the URI."
            )
    return sorted(names)


def list_objects(uri: str) -> list[tuple[str, ObjectInfo]]:
    """``(relative name, info)`` of every object below the prefix ``uri``, in one listing call."""
    bucket, prefix = _folder(uri)
    with _errors(uri, "list"):
        found = [
            (
                blob.name[len(prefix) :],
                ObjectInfo(f"gs://{bucket}/{blob.name}", int(blob.size), int(blob.generation)),
            )
            for blob in _client(uri).list_blobs(bucket, prefix=prefix, retry=_retry())
            if not blob.name.endswith("/")
        ]
        if not found and not _bucket_exists(bucket):
            raise StorageError(
                f"Could not list {uri}: bucket gs://{bucket} does not exist. Create it or fix the URI."
            )
    return sorted(found, key=lambda item: item[0])


def upload_dir(root: Path, names: list[str], uri: str, *, if_absent: bool) -> None:
    """Upload the files ``names`` below ``root`` to the prefix ``uri``, in parallel.

    Raises:
        AlreadyExistsError: ``if_absent`` and some objects existed already (after reading back
            the ones whose answer was lost).
    """
    from google.api_core import exceptions as gexc
    from google.cloud.storage import transfer_manager

    bucket_name, prefix = _folder(uri)
    bucket = _client(uri).bucket(bucket_name)
    pairs = [(str(root / name), bucket.blob(prefix + name)) for name in names]
    write_ids = [_tag(blob) if if_absent else "" for _, blob in pairs]
    upload_kwargs: dict[str, Any] = {"retry": _retry()}
    if if_absent:
        upload_kwargs["if_generation_match"] = 0
    clashes = []
    with _errors(uri, "write"):
        results = transfer_manager.upload_many(
            pairs,
            upload_kwargs=upload_kwargs,
            worker_type=transfer_manager.THREAD,
            max_workers=_TRANSFER_WORKERS,
        )
        for (_, blob), write_id, result in zip(pairs, write_ids, results, strict=True):
            target = f"gs://{bucket_name}/{blob.name}"
            if isinstance(result, gexc.PreconditionFailed) and write_id:
                if not _written_by(target, write_id):  # else: only the response was lost
                    clashes.append(target)
            elif isinstance(result, BaseException):
                raise result
    if clashes:
        raise AlreadyExistsError.for_objects(uri, clashes)


def download_dir(uri: str, names: list[str], dest: Path) -> None:
    """Download the objects ``names`` below the prefix ``uri`` into the folder ``dest``.

    They land in a temporary folder inside ``dest`` first and are renamed into place, so a failed
    or interrupted download never leaves a partial file where a downloaded one belongs.
    """
    from google.cloud.storage import transfer_manager

    bucket_name, prefix = _folder(uri)
    bucket = _client(uri).bucket(bucket_name)
    with tempdirs.staged_into(dest, names) as staging, _errors(uri, "read"):
        transfer_manager.download_many_to_path(
            bucket,
            names,
            destination_directory=str(staging),
            blob_name_prefix=prefix,
            download_kwargs={"checksum": "crc32c", "retry": _retry()},
            worker_type=transfer_manager.THREAD,
            max_workers=_TRANSFER_WORKERS,
            raise_exception=True,
        )
