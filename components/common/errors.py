"""The errors a user can act on: one ``CatsdogsError`` base and the few kinds worth telling apart.

The CLI catches ``CatsdogsError`` alone and prints its first line, so an internal bug (a plain
``ValueError``, ``KeyError``, ...) keeps its traceback. Every message names the bad value, what was
expected and the fix.

Each subclass also derives from the built-in exception it replaces (``ValueError``,
``FileExistsError``, ``RuntimeError``), so code that catches those keeps working.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from pathlib import Path


class CatsdogsError(Exception):
    """Base of every error a user can fix; the CLI turns it into a one-line message."""


class SettingsError(CatsdogsError, ValueError):
    """A setting or option is out of range or inconsistent with another one."""


class SourceError(CatsdogsError, ValueError):
    """A prepare source that cannot be read or holds no usable images."""


class DatasetError(CatsdogsError, ValueError):
    """A prepared dataset that is missing, incomplete, corrupt or tampered with."""


class ModelError(CatsdogsError, ValueError):
    """A model folder or file that is missing, unreadable or not a binary classifier."""


class ImageError(CatsdogsError, ValueError):
    """One image that cannot be used (not an image, truncated, a pixel bomb...)."""


class OutputConflictError(CatsdogsError, FileExistsError, ValueError):
    """An output location already holds something else (another run, a file, foreign files)."""


class GpuRequiredError(CatsdogsError, RuntimeError):
    """A GPU was required (``--require-gpu``) and none is visible."""


class StorageError(CatsdogsError, RuntimeError):
    """A storage operation failed for a reason the user can fix (missing bucket, permissions...)."""


class CredentialsError(StorageError):
    """Google Cloud credentials are missing, expired or refused, or the storage endpoint is down."""


class AlreadyExistsError(StorageError):
    """A create-only write found something already at the destination."""

    @classmethod
    def for_objects(cls, uri: str, clashes: list[str]) -> AlreadyExistsError:
        """The refusal of a folder upload under ``uri`` that met existing objects ``clashes``."""
        return cls(
            f"Refusing to overwrite objects under {uri}: {', '.join(clashes[:3])} already "
            "exist. Choose another output location or delete the existing objects first."
        )


class PreconditionFailedError(StorageError):
    """A generation precondition did not hold: someone else changed the object first."""


# ------------------------------------------------------------ operating-system errors a user causes

# errno -> what it means for the user and the fix (the path is named before it).
_USER_ERRNOS = {
    errno.EROFS: (
        "is on a read-only file system",
        "Write to a folder on a writable disk (or a gs:// prefix) instead.",
    ),
    errno.EACCES: (
        "is not accessible to this user (permission denied)",
        "Give this user access to it, or choose another location.",
    ),
    errno.EPERM: (
        "is not accessible to this user (operation not permitted)",
        "Give this user access to it, or choose another location.",
    ),
    errno.EEXIST: (
        "already exists and is not what was expected there (a file instead of a folder?)",
        "Remove or rename it, or choose another location.",
    ),
    errno.ENOTDIR: (
        "lies below a file, not a folder",
        "Point the option at a folder (new or existing), or remove the file in the way.",
    ),
    errno.EISDIR: (
        "is a folder where a file was expected",
        "Remove or rename that folder, or choose another location.",
    ),
    errno.ENAMETOOLONG: ("has a name too long for the file system", "Choose a shorter path."),
    errno.ELOOP: ("goes through a loop of symbolic links", "Fix the links, or use another path."),
    errno.EFBIG: (
        "would grow larger than its file system allows",
        "Write to a disk whose file system takes large files.",
    ),
    errno.EMFILE: ("could not be opened: too many open files", "Raise the limit (ulimit -n)."),
    errno.ENFILE: ("could not be opened: too many open files", "Raise the limit (ulimit -n)."),
}
_FULL = (errno.ENOSPC, errno.EDQUOT)
_STRERRORS = {os.strerror(code): code for code in (*_USER_ERRNOS, *_FULL)}
_ERRNO_IN_TEXT = re.compile(r"\[Errno (\d+)\][^']*'([^']+)'")


def describe_os_error(error: BaseException) -> str | None:
    """One line for a file-system error a user can cause and fix, or None for any other error.

    Covers ``OSError`` (and ``shutil.Error``, which gathers the errors of a folder copy) with one
    of the errnos above or "no space left"/"quota exceeded", and TensorFlow's file errors, which
    carry the same reasons in their text (TensorFlow writes SavedModels and checkpoints itself).
    Missing files (ENOENT) are left out: those are checked where a path is taken, so one that
    gets here is a bug and keeps its traceback.
    """
    code, path = _code_and_path(error)
    if code is None:
        return None
    where = _where(path)
    if code in _FULL:
        return _full_disk(path, where)
    meaning, fix = _USER_ERRNOS[code]
    if code == errno.EEXIST and path and os.path.isfile(path):
        meaning = "is a file, where a folder was expected"
        fix = "Point the option at a folder (new or existing), or remove that file."
    if code == errno.ENOTDIR and path:
        blocker = next((p for p in Path(path).parents if p.is_file()), None)
        meaning = f"lies below {blocker}, which is a file" if blocker else meaning
    return f"{where} {meaning}. {fix}"


def _code_and_path(error: BaseException) -> tuple[int | None, str]:
    """The errno and the path of a user-caused file error, or ``(None, "")``."""
    if isinstance(error, OSError) and error.errno in (*_USER_ERRNOS, *_FULL):
        return error.errno, str(error.filename2 or error.filename or "")
    if isinstance(error, OSError) and error.errno is None and error.args:
        # shutil.Error: args[0] lists (source, destination, "[Errno N] text: 'path' -> 'path'").
        for item in error.args[0] if isinstance(error.args[0], list) else []:
            if isinstance(item, tuple) and len(item) == 3:
                match = _ERRNO_IN_TEXT.search(str(item[2]))
                if match and int(match.group(1)) in (*_USER_ERRNOS, *_FULL):
                    return int(match.group(1)), str(item[1])
        return None, ""
    if type(error).__module__.startswith("tensorflow"):
        text = str(error)
        for strerror, code in _STRERRORS.items():
            if strerror in text:
                found = re.findall(r"(/[^\s;:,'\"\[\]{}]+)[;:,]?\s*" + re.escape(strerror), text)
                return code, found[-1] if found else ""
    return None, ""


def _in_temp(path: str) -> bool:
    """Whether ``path`` lies in a temporary folder of ours (``tempdirs``) or Python's in TMPDIR."""
    temp = os.path.realpath(tempfile.gettempdir())
    real = os.path.realpath(path)
    if not real.startswith(temp + os.sep):
        return False
    top = real[len(temp) + 1 :].split(os.sep)[0]
    return top.startswith(("catsdogs-", "tmp"))


def _where(path: str) -> str:
    """The path, and TMPDIR when it lies there (its temporary folders mean nothing to a user).

    A path inside a write still in flight (``.name.tmp-...``, a staging copy) is named by the
    folder being written instead.
    """
    if not path:
        return "A file"
    parts = Path(path).parts
    staging = next(
        (i for i, part in enumerate(parts) if part.startswith(".") and ".tmp-" in part), None
    )
    if staging:
        path = str(Path(*parts[:staging]))
    return f"{path} (in TMPDIR {tempfile.gettempdir()})" if _in_temp(path) else path


def _full_disk(path: str, where: str) -> str:
    existing = Path(path or ".")
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        free = f"{shutil.disk_usage(existing).free / 1e6:,.1f} MB are free"
    except OSError:
        free = "its free space is unknown"
    fix = (
        "Free some space there, or set TMPDIR to a folder on a larger disk."
        if path and _in_temp(path)
        else "Free some space there, or write to a disk with more room."
    )
    return f"No space left on the disk of {where} ({free}). {fix}"
