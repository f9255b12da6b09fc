"""The errors a user can act on: one ``CatsdogsError`` base and the few kinds worth telling apart.

The CLI catches ``CatsdogsError`` alone and prints its first line, so an internal bug (a plain
``ValueError``, ``KeyError``, ...) keeps its traceback. Every message names the bad value, what was
expected and the fix.

Each subclass also derives from the built-in exception it replaces (``ValueError``,
``FileExistsError``, ``RuntimeError``), so code that catches those keeps working.
"""

from __future__ import annotations


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


class PreconditionFailedError(StorageError):
    """A generation precondition did not hold: someone else changed the object first."""
