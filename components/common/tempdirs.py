"""Temporary folders that a killed run does not leave behind in ``TMPDIR``.

``temporary(kind)`` makes ``$TMPDIR/catsdogs-<kind>-XXXXXXXX`` and holds an exclusive ``flock`` on
a lock file inside it while the block runs; the caller gets an empty folder next to that lock file
(so uploading the folder never takes the lock file along). The kernel drops that lock when the process ends,
however it ends (``kill -9`` and out-of-memory kills included), so a folder whose lock nobody holds
belongs to a run that is gone. Each new temporary folder first removes those abandoned ones.

``temporary(kind, root=FOLDER)`` makes the same kind of folder inside ``FOLDER`` instead, under a
hidden in-flight name (``.catsdogs-<kind>.tmp-XXXXXXXX``, which storage listings skip): a staging
copy next to its destination (an export's version folder is renamed out of it), removed by the
next one made there when its owner was killed.
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
LOCK_FILE = ".owner.lock"


@contextlib.contextmanager
def temporary(kind: str, root: str | os.PathLike[str] | None = None) -> Iterator[Path]:
    """A fresh, empty folder ``$TMPDIR/catsdogs-<kind>-.../<kind>``, removed when the block ends.

    Args:
        kind: What the folder holds (``spool``, ``source``, ``data``...), part of its name.
        root: Make it in this (existing) folder instead, under a hidden in-flight name.
    """
    remove_abandoned(root)
    if root is None:
        folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-"))
    else:
        folder = Path(tempfile.mkdtemp(prefix=f".{PREFIX}{kind}.tmp-", dir=root))
    owner = claim(folder)
    try:
        (folder / kind).mkdir()
        yield folder / kind
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # still locked: no one else removes it meanwhile
        owner.close()


def claim(folder: Path) -> IO[bytes]:
    """Lock ``folder`` for this process until the returned file is closed (or the process ends).

    The lock file only appears under its name once it is held; ``is_abandoned`` tells whether the
    process that claimed a folder is gone.
    """
    staging = folder / f"{LOCK_FILE}.new"
    owner = open(staging, "wb")  # noqa: SIM115 - held open (and locked) until the folder is gone
    fcntl.flock(owner, fcntl.LOCK_EX)
    os.rename(staging, folder / LOCK_FILE)
    return owner


def is_abandoned(folder: Path) -> bool:
    """Whether ``folder`` was claimed (``claim``) by a process that has ended, however it ended."""
    try:
        lock = open(folder / LOCK_FILE, "rb")  # noqa: SIM115 - closed below
    except OSError:
        return False  # never claimed (or still being made)
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # its owner is still running
        return True


def release(folder: Path, owner: IO[bytes]) -> None:
    """Drop a claim made with ``claim``: its lock file goes, then the lock is released."""
    (folder / LOCK_FILE).unlink(missing_ok=True)
    owner.close()


def remove_abandoned(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove the temporary folders under ``root`` (default ``TMPDIR``) whose owner is gone.

    Folders without a lock file (made by other code, or still being made) are left alone.

    Returns:
        The folders removed.
    """
    base = Path(root or tempfile.gettempdir())
    try:
        folders = [
            entry for entry in base.iterdir() if entry.name.startswith((PREFIX, "." + PREFIX))
        ]
    except OSError:
        return []
    removed = []
    for folder in folders:
        try:
            lock = open(folder / LOCK_FILE, "rb")  # noqa: SIM115 - closed below
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


@contextlib.contextmanager
def staged_into(dest: Path, names: list[str]) -> Iterator[Path]:
    """A staging folder inside ``dest``; on success its files ``names`` are renamed into ``dest``.

    A failed or interrupted download never leaves a partial file where a downloaded one belongs;
    the staging folder is removed either way.
    """
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=dest))
    try:
        yield staging
        for name in names:
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
