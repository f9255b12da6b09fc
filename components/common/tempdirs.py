"""Temporary folders that a killed run does not leave behind in ``TMPDIR``.

``temporary(kind)`` makes ``$TMPDIR/catsdogs-<kind>-XXXXXXXX`` and holds an exclusive ``flock`` on
a lock file inside it while the block runs; the caller gets an empty folder next to that lock file
(so uploading the folder never takes the lock file along). The kernel drops that lock when the process ends,
however it ends (``kill -9`` and out-of-memory kills included), so a folder whose lock nobody holds
belongs to a run that is gone. Each new temporary folder first removes those abandoned ones.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

PREFIX = "catsdogs-"
_LOCK = ".owner.lock"


@contextlib.contextmanager
def temporary(kind: str) -> Iterator[Path]:
    """A fresh, empty folder ``$TMPDIR/catsdogs-<kind>-.../<kind>``, removed when the block ends.

    Args:
        kind: What the folder holds (``spool``, ``source``, ``data``...), part of its name.
    """
    remove_abandoned()
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-"))
    owner = _claim(folder)
    try:
        (folder / kind).mkdir()
        yield folder / kind
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # still locked: no one else removes it meanwhile
        owner.close()


def _claim(folder: Path) -> IO[bytes]:
    """Lock ``folder`` for this process; the lock file only appears under its name once held."""
    staging = folder / f"{_LOCK}.new"
    owner = open(staging, "wb")  # noqa: SIM115 - held open (and locked) until the folder is gone
    fcntl.flock(owner, fcntl.LOCK_EX)
    os.rename(staging, folder / _LOCK)
    return owner


def remove_abandoned(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the temporary folders under ``root`` (default ``TMPDIR``) whose owner is gone.

    Folders without a lock file (made by other code, or still being made) are left alone.

    Returns:
        The folders removed.
    """
    base = Path(root or tempfile.gettempdir())
    try:
        folders = [entry for entry in base.iterdir() if entry.name.startswith(PREFIX)]
    except OSError:
        return []
    removed = []
    for folder in folders:
        try:
            lock = open(folder / _LOCK, "rb")  # noqa: SIM115 - closed below
        except OSError:
            continue
        with lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # its owner is still running
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
