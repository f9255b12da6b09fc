"""Checks of a location before and while writing to it: a folder, writable, with space left.

Re-exported by ``storage`` (callers use ``storage.check_folder``, ``storage.disk_full``...); kept
apart so that module stays the one API's dispatch.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from catsdogs.components.common.errors import OutputConflictError, StorageError
from catsdogs.components.common.uris import check_uri, is_remote

TMPDIR_FIX = "Free some space there, or set TMPDIR to a folder on a larger disk."


@contextlib.contextmanager
def disk_full(
    folder: str | os.PathLike[str], what: str, needed: int | None, fix: str
) -> Iterator[None]:
    """Turn "no space left on device" (or over quota) inside the block into one line.

    Args:
        folder: The local folder being written to (gs:// and s3:// errors pass through unchanged).
        what: What was being written, for the message.
        needed: Bytes the write needs, if known.
        fix: The sentence that tells the user what to do.

    Raises:
        StorageError: ENOSPC or EDQUOT inside the block, naming ``folder``, ``needed`` and the
            free space.
    """
    try:
        yield
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT) or is_remote(folder):
            raise
        existing = Path(folder)
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        free = shutil.disk_usage(existing).free / 1e6
        amount = f"about {needed / 1e6:,.1f} MB" if needed else "more space"
        raise StorageError(
            f"No space left on the disk of {folder} while writing {what}: it needs {amount}, "
            f"{free:,.1f} MB are free. {fix}"
        ) from error


def check_folder(uri: str | os.PathLike[str], option: str) -> None:
    """Refuse a local folder location that is a file or lies below one (gs://, s3:// pass).

    Args:
        uri: The location, which may not exist yet.
        option: How the user gave it (``--champion``...), for the message.

    Raises:
        OutputConflictError: ``uri`` or one of its parents is a file.
        StorageError: ``uri`` is blank.
    """
    if is_remote(check_uri(uri)):
        return
    path = Path(uri)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise OutputConflictError(
                    f"{option} {uri} is not a folder: {folder} is a file. Point {option} at a "
                    "folder (new or existing) or a gs:// or s3:// prefix."
                )
            return


def check_output(uri: str | os.PathLike[str], option: str) -> None:
    """Check an output folder before any work starts: a folder (or none yet) that can be written.

    Nothing is created: a probe file is made and removed in the folder, or in its nearest
    existing parent, so a read-only disk, a missing permission or a file in the way fails at
    once instead of after the work (gs:// and s3:// prefixes are checked by their first write).

    Raises:
        OutputConflictError: ``uri`` or one of its parents is a file.
        OSError: The folder could not be written, naming ``uri`` (the CLI says so in one line).
    """
    check_folder(uri, option)
    if is_remote(uri):
        return
    existing = Path(uri)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".catsdogs-probe.tmp-", dir=existing)
    except OSError as error:
        raise type(error)(error.errno, error.strerror, str(uri)) from error
    os.close(descriptor)
    os.unlink(probe)
