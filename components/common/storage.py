"""One small storage API over local paths and ``gs://bucket/prefix`` URIs.

Every component reads and writes through these functions, so the same code runs on a laptop (local
folders), in tests (fake-gcs-server through ``STORAGE_EMULATOR_HOST``) and on a cluster (GCS).

Guarantees:
- Writes never leave a half-written file or object visible: local writes go to a temporary file in
  the same folder and are renamed into place; a GCS object only appears once its upload completes.
- ``if_absent=True`` makes a write create-only (local: a hard link that fails if the name exists;
  GCS: the ``ifGenerationMatch=0`` precondition), so an artifact is never overwritten by accident.
- A conditional GCS write (create-only or compare-and-swap) whose response is lost is not taken for
  a conflict: the client's retry then fails the precondition against the write's own first attempt.
  Each such write carries a unique id in the object's metadata, and after a precondition failure
  the object is read back: when it carries that id, the write succeeded.
- Downloads are verified with crc32c; folder transfers run in parallel through the library's
  transfer manager; transient errors are retried with the library's default retry policy.
- A missing bucket or a permission problem fails fast with a message that names the URI and the fix.
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catsdogs.components.common.errors import OutputConflictError, StorageError

GCS_SCHEME = "gs://"
_TRANSFER_WORKERS = 8
WRITE_ID = "catsdogs-write-id"  # object metadata: which conditional write created the object


class AlreadyExistsError(StorageError):
    """A create-only write found something already at the destination."""


class PreconditionFailedError(StorageError):
    """A generation precondition did not hold: someone else changed the object first."""


@dataclass(frozen=True)
class ObjectInfo:
    """What ``stat`` knows about one file or object."""

    uri: str
    size: int
    generation: int | None  # GCS generation; None for local files


def is_gcs(uri: str | os.PathLike[str]) -> bool:
    """Whether ``uri`` names a Google Cloud Storage location."""
    return str(uri).startswith(GCS_SCHEME)


def join(base: str | os.PathLike[str], *parts: str) -> str:
    """Join path parts onto a local path or a gs:// URI."""
    if is_gcs(base):
        out = str(base).rstrip("/")
        for part in parts:
            out += "/" + part.strip("/")
        return out
    return str(Path(base, *parts))


def split_gcs(uri: str) -> tuple[str, str]:
    """Split ``gs://bucket/some/prefix`` into ``("bucket", "some/prefix")``."""
    if not is_gcs(uri):
        raise ValueError(f"Expected a gs://bucket/path URI, got {uri!r}.")
    rest = uri[len(GCS_SCHEME) :]
    bucket, _, name = rest.partition("/")
    if not bucket:
        raise ValueError(f"Expected a gs://bucket/path URI with a bucket name, got {uri!r}.")
    return bucket, name


@functools.cache
def _client() -> Any:
    from catsdogs.components.common import config
    from google.cloud import storage

    return storage.Client(project=config.gcp_project())


def reset_client() -> None:
    """Forget the cached client (tests point ``STORAGE_EMULATOR_HOST`` at a new server)."""
    _client.cache_clear()


def _retry() -> Any:
    from google.cloud.storage.retry import DEFAULT_RETRY

    return DEFAULT_RETRY


@contextlib.contextmanager
def _gcs_errors(uri: str, action: str) -> Iterator[None]:
    """Turn the library's errors for a missing bucket or missing permission into clear ones."""
    from google.api_core import exceptions as gexc

    try:
        yield
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
        raise StorageError(
            f"Could not {action} {uri}: not authenticated ({error.message}). Run "
            "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS."
        ) from error


def _bucket_exists(bucket: str) -> bool:
    from google.api_core import exceptions as gexc

    try:
        return bool(_client().bucket(bucket).exists(retry=_retry()))
    except gexc.Forbidden:
        return True  # it exists, we just cannot see its metadata


def _blob(uri: str) -> Any:
    bucket, name = split_gcs(uri)
    if not name:
        raise ValueError(f"Expected an object path after the bucket in {uri!r}.")
    return _client().bucket(bucket).blob(name)


def check_folder(uri: str | os.PathLike[str], option: str) -> None:
    """Refuse a local folder location that is a file or lies below one (gs:// always passes).

    Args:
        uri: The location, which may not exist yet.
        option: How the user gave it (``--champion``...), for the message.

    Raises:
        OutputConflictError: ``uri`` or one of its parents is a file.
    """
    if is_gcs(uri):
        return
    path = Path(uri)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise OutputConflictError(
                    f"{option} {uri} is not a folder: {folder} is a file. Point {option} at a "
                    "folder (new or existing) or a gs:// prefix."
                )
            return


# ---------------------------------------------------------------- single files and objects


def exists(uri: str | os.PathLike[str]) -> bool:
    """Whether a file/object (or, locally, a folder) exists at ``uri``."""
    uri = str(uri)
    if not is_gcs(uri):
        return Path(uri).exists()
    with _gcs_errors(uri, "check"):
        if _blob(uri).exists(retry=_retry()):
            return True
        if not _bucket_exists(split_gcs(uri)[0]):
            raise StorageError(
                f"Could not check {uri}: bucket gs://{split_gcs(uri)[0]} does not exist. "
                "Create it or fix the URI."
            )
    return False


def is_dir(uri: str | os.PathLike[str]) -> bool:
    """Whether ``uri`` is a local folder or a gs:// prefix holding at least one object."""
    uri = str(uri)
    if not is_gcs(uri):
        return Path(uri).is_dir()
    bucket, name = split_gcs(uri)
    prefix = name.rstrip("/") + "/" if name else ""
    with _gcs_errors(uri, "list"):
        blobs = _client().list_blobs(bucket, prefix=prefix, max_results=1, retry=_retry())
        return any(True for _ in blobs)


def stat(uri: str | os.PathLike[str]) -> ObjectInfo:
    """Size and (for GCS) generation of one file/object; FileNotFoundError when missing."""
    uri = str(uri)
    if not is_gcs(uri):
        return ObjectInfo(uri=uri, size=Path(uri).stat().st_size, generation=None)
    blob = _blob(uri)
    with _gcs_errors(uri, "read"):
        blob.reload(retry=_retry())
    return ObjectInfo(uri=uri, size=int(blob.size), generation=int(blob.generation))


def read_bytes(uri: str | os.PathLike[str]) -> bytes:
    """The whole content of a file/object (crc32c-verified for GCS)."""
    uri = str(uri)
    if not is_gcs(uri):
        return Path(uri).read_bytes()
    with _gcs_errors(uri, "read"):
        return bytes(_blob(uri).download_as_bytes(checksum="crc32c", retry=_retry()))


def read_text(uri: str | os.PathLike[str]) -> str:
    """The whole content of a text file/object, decoded as UTF-8."""
    return read_bytes(uri).decode("utf-8")


def write_bytes(
    uri: str | os.PathLike[str],
    data: bytes,
    *,
    if_absent: bool = False,
    if_generation_match: int | None = None,
    content_type: str | None = None,
) -> None:
    """Write ``data`` atomically to ``uri``.

    Args:
        uri: Local path or gs:// URI; local parent folders are created.
        data: The content.
        if_absent: Create-only: raise AlreadyExistsError if something is there already.
        if_generation_match: GCS only: write only if the object's generation is this one
            (0 means "does not exist"); raises PreconditionFailedError otherwise.
        content_type: GCS content type (default: guessed by the library).
    """
    uri = str(uri)
    if not is_gcs(uri):
        if if_generation_match not in (None, 0):
            raise ValueError("if_generation_match other than 0 only applies to gs:// URIs.")
        _write_local_atomic(Path(uri), data, if_absent=if_absent or if_generation_match == 0)
        return
    generation = 0 if if_absent else if_generation_match
    blob = _blob(uri)
    write_id = _tag(blob) if generation is not None else None
    try:
        with _gcs_errors(uri, "write"):
            blob.upload_from_string(
                data,
                content_type=content_type or "application/octet-stream",
                if_generation_match=generation,
                retry=_retry(),
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
        with _gcs_errors(uri, "read"):
            blob.reload(retry=_retry())
    except FileNotFoundError:
        return False
    return bool((blob.metadata or {}).get(WRITE_ID) == write_id)


def write_text(uri: str | os.PathLike[str], text: str, **kwargs: Any) -> None:
    """Write UTF-8 text atomically; same options as ``write_bytes``."""
    write_bytes(uri, text.encode("utf-8"), **kwargs)


def _write_local_atomic(path: Path, data: bytes, *, if_absent: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if if_absent:
            try:
                os.link(tmp, path)  # atomic create-only: fails if the name exists
            except FileExistsError as error:
                raise AlreadyExistsError(
                    f"Refusing to overwrite {path}: it already exists. Choose another output "
                    "location or delete the existing file first."
                ) from error
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def delete(uri: str | os.PathLike[str], *, if_generation_match: int | None = None) -> None:
    """Delete one file/object (missing is not an error)."""
    uri = str(uri)
    if not is_gcs(uri):
        Path(uri).unlink(missing_ok=True)
        return
    from google.api_core import exceptions as gexc

    try:
        with _gcs_errors(uri, "delete"):
            _blob(uri).delete(if_generation_match=if_generation_match, retry=_retry())
    except (FileNotFoundError, gexc.NotFound):
        pass


def copy(src: str | os.PathLike[str], dst: str | os.PathLike[str], **kwargs: Any) -> None:
    """Copy one file/object to another location (any local/gs:// combination)."""
    src, dst = str(src), str(dst)
    if not is_gcs(src) and is_gcs(dst):
        upload_file(src, dst, **kwargs)
    elif is_gcs(src) and not is_gcs(dst):
        download_file(src, dst)
    else:
        write_bytes(dst, read_bytes(src), **kwargs)


# ---------------------------------------------------------------- listings and whole folders


def list_files(uri: str | os.PathLike[str]) -> list[str]:
    """Relative names (``/``-separated, sorted) of every file below a folder or gs:// prefix."""
    uri = str(uri)
    if not is_gcs(uri):
        root = Path(uri)
        if not root.is_dir():
            raise FileNotFoundError(f"Expected a folder at {uri}, found none.")
        return sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and not _is_in_flight(p.relative_to(root))
        )
    bucket, name = split_gcs(uri)
    prefix = name.rstrip("/") + "/" if name else ""
    with _gcs_errors(uri, "list"):
        names = [
            blob.name[len(prefix) :]
            for blob in _client().list_blobs(bucket, prefix=prefix, retry=_retry())
            if not blob.name.endswith("/")
        ]
        if not names and not _bucket_exists(bucket):
            raise StorageError(
                f"Could not list {uri}: bucket gs://{bucket} does not exist. Create it or fix the URI."
            )
    return sorted(names)


def list_objects(uri: str | os.PathLike[str]) -> list[tuple[str, ObjectInfo]]:
    """``(relative name, info)`` of every file below a folder or gs:// prefix, sorted by name.

    One listing call for GCS (sizes and generations come with it); local files are stat'ed.
    """
    uri = str(uri)
    if not is_gcs(uri):
        return [(name, stat(join(uri, name))) for name in list_files(uri)]
    bucket, name = split_gcs(uri)
    prefix = name.rstrip("/") + "/" if name else ""
    with _gcs_errors(uri, "list"):
        found = [
            (
                blob.name[len(prefix) :],
                ObjectInfo(f"gs://{bucket}/{blob.name}", int(blob.size), int(blob.generation)),
            )
            for blob in _client().list_blobs(bucket, prefix=prefix, retry=_retry())
            if not blob.name.endswith("/")
        ]
        if not found and not _bucket_exists(bucket):
            raise StorageError(
                f"Could not list {uri}: bucket gs://{bucket} does not exist. Create it or fix the URI."
            )
    return sorted(found, key=lambda item: item[0])


def temp_path(path: Path) -> Path:
    """A unique temporary name next to ``path``, in the in-flight pattern that listings skip."""
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


def _is_in_flight(relative: Path) -> bool:
    """Temporary files and staging folders of writes still in progress (never listed)."""
    return (
        relative.name.startswith(".")
        and ".tmp-" in relative.name
        or any(part.startswith(".download-") for part in relative.parts)
    )


def upload_file(local_path: str | os.PathLike[str], uri: str, *, if_absent: bool = False) -> None:
    """Upload one local file to ``uri`` (local destinations are copied atomically)."""
    if not is_gcs(uri):
        _write_local_atomic(Path(uri), Path(local_path).read_bytes(), if_absent=if_absent)
        return
    blob = _blob(uri)
    write_id = _tag(blob) if if_absent else None
    try:
        with _gcs_errors(uri, "write"):
            blob.upload_from_filename(
                str(local_path), if_generation_match=0 if if_absent else None, retry=_retry()
            )
    except PreconditionFailedError as error:
        if write_id and _written_by(uri, write_id):
            return  # our first attempt landed; only its response was lost
        raise AlreadyExistsError(f"Refusing to overwrite {uri}: it already exists.") from error


def download_file(uri: str, local_path: str | os.PathLike[str]) -> None:
    """Download one object to a local file, crc32c-verified, renamed into place when complete."""
    local = Path(local_path)
    if not is_gcs(uri):
        _write_local_atomic(local, Path(uri).read_bytes(), if_absent=False)
        return
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(f".{local.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with _gcs_errors(uri, "read"):
            _blob(uri).download_to_filename(str(tmp), checksum="crc32c", retry=_retry())
        os.replace(tmp, local)
    finally:
        tmp.unlink(missing_ok=True)


def upload_dir(local_dir: str | os.PathLike[str], uri: str, *, if_absent: bool = False) -> None:
    """Upload every file below ``local_dir`` to the folder/prefix ``uri``, in parallel.

    Args:
        local_dir: The folder to upload.
        uri: Destination folder or gs:// prefix.
        if_absent: Create-only for every file: fail instead of overwriting anything.
    """
    root = Path(local_dir)
    names = list_files(root)
    if not is_gcs(uri):
        for name in names:
            upload_file(root / name, join(uri, name), if_absent=if_absent)
        return
    from google.api_core import exceptions as gexc
    from google.cloud.storage import transfer_manager

    bucket_name, prefix = split_gcs(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    bucket = _client().bucket(bucket_name)
    pairs = [(str(root / name), bucket.blob(prefix + name)) for name in names]
    write_ids = [_tag(blob) if if_absent else "" for _, blob in pairs]
    upload_kwargs: dict[str, Any] = {"retry": _retry()}
    if if_absent:
        upload_kwargs["if_generation_match"] = 0
    clashes = []
    with _gcs_errors(uri, "write"):
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
        raise AlreadyExistsError(
            f"Refusing to overwrite objects under {uri}: {', '.join(clashes[:3])} already "
            "exist. Choose another output location or delete the existing objects first."
        )


def download_dir(uri: str, local_dir: str | os.PathLike[str]) -> list[str]:
    """Download every object below ``uri`` into ``local_dir``, in parallel, crc32c-verified.

    Files land in a temporary folder next to ``local_dir`` first and are renamed into place, so a
    failed or interrupted download never leaves a partial file under ``local_dir``.

    Returns:
        The relative names downloaded.
    """
    dest = Path(local_dir)
    names = list_files(uri)
    dest.mkdir(parents=True, exist_ok=True)
    if not is_gcs(uri):
        for name in names:
            _write_local_atomic(dest / name, Path(uri, name).read_bytes(), if_absent=False)
        return names
    from google.cloud.storage import transfer_manager

    bucket_name, prefix = split_gcs(uri)
    prefix = prefix.rstrip("/") + "/" if prefix else ""
    bucket = _client().bucket(bucket_name)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=dest))
    try:
        with _gcs_errors(uri, "read"):
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
        for name in names:
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return names


@contextlib.contextmanager
def local_dir(uri: str | os.PathLike[str]) -> Iterator[Path]:
    """A local folder with the content of ``uri``: the folder itself, or a temporary download."""
    uri = str(uri)
    if not is_gcs(uri):
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory(prefix="catsdogs-") as tmp:
        download_dir(uri, tmp)
        yield Path(tmp)


@contextlib.contextmanager
def output_dir(uri: str | os.PathLike[str]) -> Iterator[Path]:
    """A local folder to write into; for gs:// it is uploaded to ``uri`` when the block succeeds."""
    uri = str(uri)
    if not is_gcs(uri):
        Path(uri).mkdir(parents=True, exist_ok=True)
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory(prefix="catsdogs-out-") as tmp:
        yield Path(tmp)
        upload_dir(tmp, uri)
