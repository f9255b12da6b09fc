"""One small storage API over local paths, ``gs://bucket/prefix`` and ``s3://bucket/prefix`` URIs.

Every component reads and writes through these functions, so the same code runs on a laptop, in
tests (fake-gcs-server, moto's S3 server) and on a cluster (GCS, Amazon S3 or MinIO). Local paths
are handled here; gs:// URIs go to ``gcs``, s3:// URIs to ``s3``: two backends with the same
functions and guarantees (retries, clear errors, conditional writes read back, parallel transfers).

Guarantees:
- Writes never leave a half-written file or object visible: local writes go to a temporary file in
  the same folder and are renamed into place; an object only appears once its upload completes.
- ``if_absent=True`` makes a write create-only (local: a hard link that fails if the name exists;
  GCS: ``ifGenerationMatch=0``; S3: ``If-None-Match: *``): no artifact is overwritten by accident.
- ``if_generation_match`` is a compare-and-swap on ``stat``'s ``generation`` (GCS: the generation;
  S3: the ETag, ``If-Match``). A conditional write whose lost response made the client's retry
  fail its own precondition still succeeds (see ``gcs`` and ``s3``).
- Downloads are verified (GCS: crc32c, S3: the stored checksum); folder transfers run in parallel;
  transient errors are retried by each library; a missing bucket or permission fails fast, clearly.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from catsdogs.components.common import gcs, s3, tempdirs
from catsdogs.components.common.errors import (
    AlreadyExistsError,
    OutputConflictError,
    PreconditionFailedError,
    StorageError,
)
from catsdogs.components.common.gcs import GCS_SCHEME, ObjectInfo, is_gcs, split_gcs
from catsdogs.components.common.location_checks import (
    TMPDIR_FIX,
    check_folder,
    check_output,
    disk_full,
)
from catsdogs.components.common.s3 import S3_SCHEME, is_s3
from catsdogs.components.common.uris import (
    REMOTE_SCHEMES,
    check_uri,
    is_remote,
    join,
    names_no_bucket,
    split_remote,
)

# The API callers use as ``storage.NAME``; the errors, the URI helpers and ObjectInfo are defined
# in errors, uris, location_checks, gcs and s3.
__all__ = [
    "GCS_SCHEME",
    "REMOTE_SCHEMES",
    "S3_SCHEME",
    "AlreadyExistsError",
    "ObjectInfo",
    "OutputConflictError",
    "PreconditionFailedError",
    "StorageError",
    "TMPDIR_FIX",
    "check_folder",
    "check_output",
    "check_uri",
    "check_reachable",
    "copy",
    "delete",
    "disk_full",
    "download_dir",
    "download_file",
    "exists",
    "is_dir",
    "is_gcs",
    "is_remote",
    "is_s3",
    "join",
    "list_files",
    "list_objects",
    "local_dir",
    "names_no_bucket",
    "output_dir",
    "read_bytes",
    "read_text",
    "split_gcs",
    "split_remote",
    "stat",
    "temp_path",
    "upload_dir",
    "upload_file",
    "write_bytes",
    "write_text",
]


def _remote(uri: str | os.PathLike[str]) -> ModuleType | None:
    """The backend module of a gs:// or s3:// URI; None for a local path."""
    uri = check_uri(uri)
    return gcs if is_gcs(uri) else s3 if is_s3(uri) else None


def check_reachable(uri: str | os.PathLike[str]) -> None:
    """Before any work: a gs:// / s3:// location's credentials and bucket work (local: no check).

    Raises:
        StorageError: No credentials, no bucket, no network (one line naming ``uri`` and the fix).
    """
    if remote := _remote(uri):
        remote.check_bucket(str(uri))


# ---------------------------------------------------------------- single files and objects


def exists(uri: str | os.PathLike[str]) -> bool:
    """Whether a file/object (or, locally, a folder) exists at ``uri``."""
    uri = check_uri(uri)
    remote = _remote(uri)
    return bool(remote.exists(uri)) if remote else Path(uri).exists()


def is_dir(uri: str | os.PathLike[str]) -> bool:
    """Whether ``uri`` is a local folder or a gs:// / s3:// prefix holding at least one object."""
    uri = check_uri(uri)
    remote = _remote(uri)
    return bool(remote.is_dir(uri)) if remote else Path(uri).is_dir()


def stat(uri: str | os.PathLike[str]) -> ObjectInfo:
    """Size and version token (GCS generation, S3 ETag) of one file/object; FileNotFoundError when missing."""
    uri = check_uri(uri)
    if remote := _remote(uri):
        return remote.stat(uri)
    return ObjectInfo(uri=uri, size=Path(uri).stat().st_size, generation=None)


def read_bytes(uri: str | os.PathLike[str]) -> bytes:
    """The whole content of a file/object (checksum-verified for GCS and S3)."""
    uri = check_uri(uri)
    remote = _remote(uri)
    return bytes(remote.read_bytes(uri)) if remote else Path(uri).read_bytes()


def read_text(uri: str | os.PathLike[str]) -> str:
    """The whole content of a text file/object, decoded as UTF-8."""
    return read_bytes(uri).decode("utf-8")


def write_bytes(
    uri: str | os.PathLike[str],
    data: bytes,
    *,
    if_absent: bool = False,
    if_generation_match: int | str | None = None,
    content_type: str | None = None,
) -> None:
    """Write ``data`` atomically to ``uri``.

    Args:
        uri: Local path, gs:// or s3:// URI; local parent folders are created.
        data: The content.
        if_absent: Create-only: raise AlreadyExistsError if something is there already.
        if_generation_match: gs:// / s3:// only: write only if ``stat(uri).generation`` (GCS
            generation, S3 ETag) is this one (0: must not exist); else PreconditionFailedError.
        content_type: The object's content type (default: application/octet-stream).
    """
    uri = check_uri(uri)
    if remote := _remote(uri):
        remote.write_bytes(
            uri,
            data,
            if_absent=if_absent,
            if_generation_match=if_generation_match,
            content_type=content_type,
        )
        return
    if if_generation_match not in (None, 0):
        raise ValueError("if_generation_match other than 0 only applies to gs:// and s3:// URIs.")
    _write_local_atomic(Path(uri), data, if_absent=if_absent or if_generation_match == 0)


def write_text(uri: str | os.PathLike[str], text: str, **kwargs: Any) -> None:
    """Write UTF-8 text atomically; same options as ``write_bytes``."""
    write_bytes(uri, text.encode("utf-8"), **kwargs)


def _write_local_atomic(path: Path, data: bytes, *, if_absent: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            if error.filename is not None or error.errno is None:
                raise
            raise type(error)(error.errno, error.strerror, str(path)) from error  # name the file
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


def delete(uri: str | os.PathLike[str], *, if_generation_match: int | str | None = None) -> None:
    """Delete one file/object (missing is not an error)."""
    uri = check_uri(uri)
    if remote := _remote(uri):
        remote.delete(uri, if_generation_match=if_generation_match)
    else:
        Path(uri).unlink(missing_ok=True)


def copy(src: str | os.PathLike[str], dst: str | os.PathLike[str], **kwargs: Any) -> None:
    """Copy one file/object to another location (any local, gs:// or s3:// combination)."""
    source, destination = check_uri(src), check_uri(dst)
    if not is_remote(source) and is_remote(destination):
        upload_file(source, destination, **kwargs)
    elif is_remote(source) and not is_remote(destination):
        download_file(source, destination)
    else:
        write_bytes(destination, read_bytes(source), **kwargs)


def upload_file(local_path: str | os.PathLike[str], uri: str, *, if_absent: bool = False) -> None:
    """Upload one local file to ``uri`` (local destinations are copied atomically)."""
    if remote := _remote(check_uri(uri)):
        remote.upload_file(local_path, uri, if_absent=if_absent)
    else:
        _write_local_atomic(Path(uri), Path(local_path).read_bytes(), if_absent=if_absent)


def download_file(uri: str, local_path: str | os.PathLike[str]) -> None:
    """Download one object to a local file, checksum-verified, renamed into place when complete."""
    local = Path(local_path)
    remote = _remote(check_uri(uri))
    if remote is None:
        _write_local_atomic(local, Path(uri).read_bytes(), if_absent=False)
        return
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(local)
    try:
        remote.download_file(uri, tmp)
        os.replace(tmp, local)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------- listings and whole folders


def list_files(uri: str | os.PathLike[str]) -> list[str]:
    """Relative names (``/``-separated, sorted) of every file below a folder or gs:// / s3:// prefix."""
    uri = check_uri(uri)
    if remote := _remote(uri):
        return remote.list_files(uri)
    root = Path(uri)
    if not root.is_dir():
        raise FileNotFoundError(f"Expected a folder at {uri}, found none.")
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not _is_in_flight(p.relative_to(root))
    )


def list_objects(uri: str | os.PathLike[str]) -> list[tuple[str, ObjectInfo]]:
    """``(relative name, info)`` of every file below a folder or gs:// / s3:// prefix, by name.

    One listing (sizes and generations or ETags come with it) for GCS and S3; local files are
    stat'ed.
    """
    uri = check_uri(uri)
    if remote := _remote(uri):
        return remote.list_objects(uri)
    return [(name, stat(join(uri, name))) for name in list_files(uri)]


def temp_path(path: Path) -> Path:
    """A unique temporary name next to ``path``, in the in-flight pattern that listings skip."""
    return path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")


def _is_in_flight(relative: Path) -> bool:
    """Temporary files and staging folders of writes still in progress (never listed)."""
    return any(
        part.startswith(".") and ".tmp-" in part or part.startswith(".download-")
        for part in relative.parts
    )


def upload_dir(local_dir: str | os.PathLike[str], uri: str, *, if_absent: bool = False) -> None:
    """Upload every file below ``local_dir`` to the folder/prefix ``uri``, in parallel.

    Args:
        local_dir: The folder to upload.
        uri: Destination folder or gs:// / s3:// prefix.
        if_absent: Create-only for every file: fail instead of overwriting anything.
    """
    root = Path(local_dir)
    names = list_files(root)
    if remote := _remote(check_uri(uri)):
        remote.upload_dir(root, names, uri, if_absent=if_absent)
        return
    for name in names:
        upload_file(root / name, join(uri, name), if_absent=if_absent)


def download_dir(uri: str, local_dir: str | os.PathLike[str]) -> list[str]:
    """Download every object below ``uri`` into ``local_dir``, in parallel, checksum-verified.

    Files land in a temporary folder next to ``local_dir`` first and are renamed into place, so a
    failed or interrupted download never leaves a partial file under ``local_dir``.

    Returns:
        The relative names downloaded.
    """
    dest = Path(local_dir)
    names = list_files(uri)
    dest.mkdir(parents=True, exist_ok=True)
    if remote := _remote(uri):
        remote.download_dir(uri, names, dest)
        return names
    for name in names:
        _write_local_atomic(dest / name, Path(uri, name).read_bytes(), if_absent=False)
    return names


@contextlib.contextmanager
def local_dir(uri: str | os.PathLike[str]) -> Iterator[Path]:
    """A local folder with the content of ``uri``: the folder itself, or a temporary download."""
    location = check_uri(uri)
    if not is_remote(location):
        yield Path(location)
        return
    with tempdirs.temporary("download") as tmp:
        download_dir(location, tmp)
        yield tmp


@contextlib.contextmanager
def output_dir(uri: str | os.PathLike[str]) -> Iterator[Path]:
    """A local folder to write into; for gs:// / s3:// it is uploaded when the block succeeds."""
    location = check_uri(uri)
    if not is_remote(location):
        Path(location).mkdir(parents=True, exist_ok=True)
        yield Path(location)
        return
    with tempdirs.temporary("upload") as tmp:
        yield tmp
        upload_dir(tmp, location)
