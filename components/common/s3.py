"""The s3:// side of ``storage``: Amazon S3 and S3-compatible stores (MinIO) through ``boto3``.

``storage`` is the API every component calls; it sends s3:// URIs here. The functions have the
same names, arguments and guarantees as ``gcs``'s, so ``storage`` treats both alike:

- The endpoint is ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` (MinIO; unset: Amazon S3), with
  path-style addressing when one is set; credentials come from boto3's standard chain
  (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, shared files, IRSA web identity on EKS). An
  endpoint that accepts no connection fails at once (``s3_client.client``).
- Every call retries with botocore's own retry modes: ``standard`` (10 attempts) unless
  ``AWS_RETRY_MODE``/``AWS_MAX_ATTEMPTS`` choose otherwise; 500/503 SlowDown, 429, timeouts and
  connection resets are retried.
- Create-only writes send ``If-None-Match: *``, compare-and-swap writes ``If-Match: <ETag>``
  (the ETag is this backend's ``ObjectInfo.generation``; ``0`` means "does not exist").
- A conditional write whose response is lost is not taken for a conflict: the client's retry then
  fails the precondition against the write's own first attempt. Every write carries a unique id
  in the object's user metadata (``x-amz-meta-catsdogs-write-id``), and after a precondition
  failure (or a retried multipart completion that finds its upload gone) the object is read back:
  when it carries that id, the write succeeded.
- Files of ``MULTIPART_THRESHOLD`` bytes or more go up as multipart uploads (parts in parallel; a
  create-only one completes with ``If-None-Match: *``); an object appears only once complete.
- Downloads ask for the stored checksum (``ChecksumMode=ENABLED``), which botocore verifies; folder
  transfers run in parallel threads on the one (thread-safe) client.

The library is imported inside the functions, so local-only runs never load it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from catsdogs.components.common import s3_client, tempdirs
from catsdogs.components.common.errors import (
    AlreadyExistsError,
    PreconditionFailedError,
)
from catsdogs.components.common.gcs import ObjectInfo
from catsdogs.components.common.s3_client import (
    S3_SCHEME,
    client,
    is_s3,
    reset_client,
    split_s3,
)

__all__ = ["S3_SCHEME", "client", "is_s3", "reset_client", "split_s3"]  # and the functions below
WRITE_ID = "catsdogs-write-id"  # user metadata: which conditional write created the object
MULTIPART_THRESHOLD = 64 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024  # S3 (and MinIO) refuse parts under 5 MiB except the last
_CHUNK = 1024 * 1024


def check_bucket(uri: str) -> None:
    """Fail fast, before any work, when ``uri`` cannot be used: no endpoint, credentials or bucket.

    Raises:
        CredentialsError: No usable credentials, or the endpoint does not accept connections.
        StorageError: The bucket does not exist, or access to it is denied.
    """
    bucket, _ = split_s3(uri)
    with s3_client.errors(uri, "reach"):
        client().head_bucket(Bucket=bucket)  # 404 -> "bucket does not exist", 403 -> denied


# ---------------------------------------------------------------- single objects


def exists(uri: str) -> bool:
    """Whether an object exists at ``uri`` (StorageError when its bucket does not)."""
    try:
        stat(uri)
    except FileNotFoundError:
        return False
    return True


def is_dir(uri: str) -> bool:
    """Whether the prefix ``uri`` holds at least one object."""
    bucket, prefix = s3_client.folder(uri)
    with s3_client.errors(uri, "list"):
        return bool(
            client().list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount")
        )


def stat(uri: str) -> ObjectInfo:
    """Size and ETag (as ``generation``) of one object; FileNotFoundError when missing."""
    bucket, key = s3_client.key(uri)
    with s3_client.errors(uri, "read"):
        head = client().head_object(Bucket=bucket, Key=key)
    return ObjectInfo(uri=uri, size=int(head["ContentLength"]), generation=str(head["ETag"]))


def _get(uri: str) -> Any:
    bucket, key = s3_client.key(uri)
    return client().get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")["Body"]


def read_bytes(uri: str) -> bytes:
    """The whole content of an object, checked against its stored checksum."""
    with s3_client.errors(uri, "read"):
        return bytes(_get(uri).read())


def _conditions(if_absent: bool, if_generation_match: int | str | None) -> dict[str, str]:
    """put_object's precondition arguments (``0``: must not exist; an ETag: must still be it)."""
    if if_absent or if_generation_match == 0:
        return {"IfNoneMatch": "*"}
    if if_generation_match is None:
        return {}
    if not isinstance(if_generation_match, str):
        raise ValueError(f"s3:// preconditions take an ETag string, got {if_generation_match!r}.")
    return {"IfMatch": if_generation_match}


def _conditional(
    uri: str, conditions: dict[str, str], upload: Callable[[dict[str, str]], None]
) -> None:
    """Run ``upload(metadata)``; a precondition failure of our own lost write counts as done.

    Raises:
        AlreadyExistsError: Create-only, and another object was there.
        PreconditionFailedError: Compare-and-swap, and the object had changed (or was deleted).
    """
    from botocore import exceptions as bexc

    write_id = uuid.uuid4().hex
    try:
        with s3_client.errors(uri, "write"):
            try:
                upload({WRITE_ID: write_id})
            except bexc.ClientError as error:
                if s3_client.code(error) != "NoSuchUpload":
                    raise
                # A retried CompleteMultipartUpload whose first answer was lost: read back.
                if not _written_by(uri, write_id):
                    raise
    except (PreconditionFailedError, FileNotFoundError) as error:
        # FileNotFoundError: If-Match on an object that is gone (404), a failed swap too.
        if not conditions or _written_by(uri, write_id):
            if not conditions:
                raise
            return  # our first attempt landed; only its response was lost
        if "IfNoneMatch" in conditions:
            raise AlreadyExistsError(
                f"Refusing to overwrite {uri}: it already exists. Choose another output location "
                "or delete the existing object first."
            ) from error
        if isinstance(error, FileNotFoundError):
            raise PreconditionFailedError(
                f"Could not write {uri}: it was deleted by someone else. Re-read it and try again."
            ) from error
        raise


def _written_by(uri: str, write_id: str) -> bool:
    """Whether the object at ``uri`` is the one that the write ``write_id`` created."""
    bucket, key = s3_client.key(uri)
    try:
        with s3_client.errors(uri, "read"):
            head = client().head_object(Bucket=bucket, Key=key)
    except FileNotFoundError:
        return False
    return bool(head.get("Metadata", {}).get(WRITE_ID) == write_id)


def write_bytes(
    uri: str,
    data: bytes,
    *,
    if_absent: bool,
    if_generation_match: int | str | None,
    content_type: str | None,
) -> None:
    """Upload ``data`` to ``uri``; the options are ``storage.write_bytes``'s."""
    bucket, key = s3_client.key(uri)
    conditions = _conditions(if_absent, if_generation_match)

    def put(metadata: dict[str, str]) -> None:
        client().put_object(
            Bucket=bucket,
            Key=key,
            Body=data,
            ContentType=content_type or "application/octet-stream",
            Metadata=metadata,
            **conditions,
        )

    _conditional(uri, conditions, put)


def delete(uri: str, *, if_generation_match: int | str | None = None) -> None:
    """Delete one object (missing is not an error); an ETag makes it conditional (If-Match)."""
    bucket, key = s3_client.key(uri)
    extra = {"IfMatch": if_generation_match} if isinstance(if_generation_match, str) else {}
    with contextlib.suppress(FileNotFoundError), s3_client.errors(uri, "delete"):
        client().delete_object(Bucket=bucket, Key=key, **extra)


def upload_file(local_path: str | os.PathLike[str], uri: str, *, if_absent: bool) -> None:
    """Upload one local file to the object ``uri`` (create-only with ``if_absent``)."""
    path = Path(local_path)
    conditions = _conditions(if_absent, None)
    bucket, key = s3_client.key(uri)
    if path.stat().st_size < MULTIPART_THRESHOLD:
        data = path.read_bytes()

        def put(metadata: dict[str, str]) -> None:
            client().put_object(Bucket=bucket, Key=key, Body=data, Metadata=metadata, **conditions)

        _conditional(uri, conditions, put)
        return
    _conditional(
        uri, conditions, lambda metadata: _multipart(path, bucket, key, metadata, conditions)
    )


def _multipart(
    path: Path, bucket: str, key: str, metadata: dict[str, str], conditions: dict[str, str]
) -> None:
    """One multipart upload of ``path``: parts in parallel, completed (conditionally) at the end.

    An upload that fails is aborted, so its parts do not linger (and cost) in the bucket.
    """
    if PART_SIZE < 5 * 1024 * 1024:
        raise ValueError(f"PART_SIZE must be at least 5 MiB (S3's minimum), got {PART_SIZE}.")
    s3 = client()
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, Metadata=metadata)["UploadId"]
    size = path.stat().st_size
    offsets = list(range(0, size, PART_SIZE))

    def part(number: int, offset: int) -> dict[str, Any]:
        with open(path, "rb") as handle:
            handle.seek(offset)
            body = handle.read(PART_SIZE)
        answer = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    try:
        with concurrent.futures.ThreadPoolExecutor(s3_client.TRANSFER_WORKERS) as pool:
            parts = list(pool.map(part, range(1, len(offsets) + 1), offsets))
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            **conditions,
        )
    except BaseException:
        with contextlib.suppress(Exception):  # already completed (lost answer) or gone: fine
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        raise


def download_file(uri: str, local_path: Path) -> None:
    """Download one object to ``local_path``, checksum-verified (no rename: the caller's job)."""
    with s3_client.errors(uri, "read"):
        body = _get(uri)
        with open(local_path, "wb") as handle:
            for chunk in body.iter_chunks(_CHUNK):
                handle.write(chunk)


# ---------------------------------------------------------------- listings and whole folders


def list_objects(uri: str) -> list[tuple[str, ObjectInfo]]:
    """``(relative name, info)`` of every object below the prefix ``uri``, sorted by name."""
    bucket, prefix = s3_client.folder(uri)
    found = []
    with s3_client.errors(uri, "list"):
        for page in (
            client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        ):
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/"):
                    info = ObjectInfo(
                        f"s3://{bucket}/{item['Key']}", int(item["Size"]), item["ETag"]
                    )
                    found.append((item["Key"][len(prefix) :], info))
    return sorted(found, key=lambda entry: entry[0])


def list_files(uri: str) -> list[str]:
    """Relative names (sorted) of every object below the prefix ``uri``."""
    return [name for name, _ in list_objects(uri)]


def _parallel(jobs: list[Callable[[], None]]) -> list[BaseException | None]:
    """Run ``jobs`` on the transfer threads; each one's exception (or None), in order."""

    def run(job: Callable[[], None]) -> BaseException | None:
        try:
            job()
        except Exception as error:
            return error
        return None

    with concurrent.futures.ThreadPoolExecutor(s3_client.TRANSFER_WORKERS) as pool:
        return list(pool.map(run, jobs))


def upload_dir(root: Path, names: list[str], uri: str, *, if_absent: bool) -> None:
    """Upload the files ``names`` below ``root`` to the prefix ``uri``, in parallel.

    Raises:
        AlreadyExistsError: ``if_absent`` and some objects existed already (after reading back
            the ones whose answer was lost).
    """
    bucket, prefix = s3_client.folder(uri)
    targets = [f"s3://{bucket}/{prefix}{name}" for name in names]
    results = _parallel(
        [
            functools.partial(upload_file, root / name, target, if_absent=if_absent)
            for name, target in zip(names, targets, strict=True)
        ]
    )
    clashes = [
        t for t, r in zip(targets, results, strict=True) if isinstance(r, AlreadyExistsError)
    ]
    for result in results:
        if result is not None and not isinstance(result, AlreadyExistsError):
            raise result
    if clashes:
        raise AlreadyExistsError.for_objects(uri, clashes)


def download_dir(uri: str, names: list[str], dest: Path) -> None:
    """Download the objects ``names`` below the prefix ``uri`` into the folder ``dest``.

    They land in a temporary folder inside ``dest`` first and are renamed into place, so a failed
    or interrupted download never leaves a partial file where a downloaded one belongs.
    """
    bucket, prefix = s3_client.folder(uri)

    with tempdirs.staged_into(dest, names) as staging:

        def fetch(name: str) -> None:
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            download_file(f"s3://{bucket}/{prefix}{name}", staging / name)

        for result in _parallel([functools.partial(fetch, name) for name in names]):
            if result is not None:
                raise result
