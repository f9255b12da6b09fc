"""The champion location: its pointer (champion.json), its versions and the lock that guards them.

Layout of a champion location (local folder, gs:// or s3:// prefix):

    champion.json            the pointer: which version is the champion, with its score and identity
    versions/v0001/          every model ever promoted, never overwritten:
        evaluation.json      its evaluation (from ``evaluate``), written first
        model.keras          + metrics.json, history.json, run.json, curves.png when the model
                             folder has them (metrics.json is the trainer's summary)
    versions/v0002/ ...

The champion model is ``<champion>/<ChampionRecord.path>/model.keras``. A promotion writes a new
``versions/vN/`` with create-only writes (``write_version``) and switches the pointer in one
compare-and-swap step (``publish``); a promotion that loses the race deletes the version it wrote
and gets ``PromotionConflictError``. How the swap, the lock and a lost answer work on each backend,
and why: docs/decisions.md, "The champion pointer: compare-and-swap per backend".
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import fcntl
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from catsdogs.components.common import errors, model_dir, storage
from catsdogs.components.promote.record import VERSIONS, ChampionRecord, version_path

CHAMPION_FILE = "champion.json"
OPTIONAL_MODEL_FILES = (
    model_dir.METRICS_FILE,
    model_dir.HISTORY_FILE,
    model_dir.RUN_FILE,
    model_dir.CURVES_FILE,
)
LOCK_FILE = ".champion.lock"
LOCK_WAIT_S = 30.0


class PromotionConflictError(storage.StorageError, errors.CatsdogsError):
    """Another promotion changed the champion while this one was deciding or writing."""


@dataclasses.dataclass(frozen=True)
class Pointer:
    """What champion.json held when it was read."""

    record: ChampionRecord | None
    generation: (
        int | str | None
    )  # GCS generation / S3 ETag of champion.json (0: absent); None locally

    @property
    def version(self) -> int:
        """The champion's version (0: no champion yet)."""
        return self.record.version if self.record else 0


def read_pointer(champion_uri: str) -> Pointer:
    """The current champion record (None when there is none yet) and its generation or ETag."""
    uri = storage.join(champion_uri, CHAMPION_FILE)
    generation: int | str | None = None
    if storage.is_remote(uri):
        try:
            generation = storage.stat(uri).generation  # before the read: a CAS on it is safe
        except FileNotFoundError:
            return Pointer(None, 0)
    elif not storage.exists(uri):
        return Pointer(None, None)
    try:
        text = storage.read_text(uri)
    except FileNotFoundError:
        return Pointer(None, 0 if storage.is_remote(uri) else None)
    return Pointer(ChampionRecord.from_json(text, uri), generation)


def existing_versions(champion_uri: str) -> list[int]:
    """The numbers of the ``versions/vN/`` folders that exist (named by champion.json or not)."""
    root = storage.join(champion_uri, VERSIONS)
    if not storage.is_dir(root):
        return []
    found = {int(m.group(1)) for n in storage.list_files(root) if (m := re.match(r"v(\d+)/", n))}
    return sorted(found)


def write_version(
    champion_uri: str, version: int, model_uri: str, model_sha256: str, evaluation_text: str
) -> tuple[str, list[str]]:
    """Create ``versions/v<N>/`` with create-only writes; returns its relative path and the URIs written.

    Raises:
        PromotionConflictError: Another promotion claimed ``version`` first.
        ModelError: model.keras changed since its sha256 was checked.
    """
    relative = version_path(version)
    folder = storage.join(champion_uri, relative)
    written: list[str] = []
    try:
        # evaluation.json first: it claims the version name (a concurrent claimer fails here).
        claim = storage.join(folder, model_dir.EVALUATION_FILE)
        storage.write_text(claim, evaluation_text, if_absent=True)
        written.append(claim)
        for name in (model_dir.MODEL_FILE, *OPTIONAL_MODEL_FILES):
            source = storage.join(model_uri, name)
            if name != model_dir.MODEL_FILE and not storage.exists(source):
                continue
            data = storage.read_bytes(source)
            if name == model_dir.MODEL_FILE and hashlib.sha256(data).hexdigest() != model_sha256:
                raise errors.ModelError(
                    f"{source} changed while it was being promoted; promote it again."
                )
            target = storage.join(folder, name)
            storage.write_bytes(target, data, if_absent=True)
            written.append(target)
    except storage.AlreadyExistsError as error:
        _discard(champion_uri, version, written)
        raise PromotionConflictError(f"{folder} is being written by another promotion.") from error
    except BaseException:
        _discard(champion_uri, version, written)
        raise
    return relative, written


def publish(
    champion_uri: str, record: ChampionRecord, expected: Pointer, written: list[str]
) -> None:
    """Switch champion.json to ``record``; when that fails, read it back to see whose write won.

    Raises:
        PromotionConflictError: Another promotion switched the pointer first; the version this
            one wrote is deleted (unless a pointer names it).
    """
    try:
        _swap_pointer(champion_uri, record, expected)
    except BaseException as error:
        try:
            current = read_pointer(champion_uri)
        except Exception:  # cannot tell who won: keep the version
            current = None
        if current and current.version == record.version and isinstance(error, Exception):
            return  # our switch landed (its answer was lost, or a later step failed)
        if current is not None:
            _discard(champion_uri, record.version, written)
        raise


def _swap_pointer(champion_uri: str, record: ChampionRecord, expected: Pointer) -> None:
    """Replace champion.json with ``record`` only if it is still ``expected`` (compare-and-swap)."""
    uri = storage.join(champion_uri, CHAMPION_FILE)
    text = record.to_json()
    if storage.is_remote(uri):
        try:
            storage.write_text(uri, text, if_generation_match=expected.generation or 0)
        except (storage.PreconditionFailedError, storage.AlreadyExistsError) as error:
            raise PromotionConflictError(
                f"{uri} changed while this promotion was deciding (another promotion won)."
            ) from error
        return
    with _locked(Path(champion_uri)):
        current = read_pointer(champion_uri)
        if current.version != expected.version:
            raise PromotionConflictError(
                f"{uri} changed while this promotion was deciding: version {expected.version} "
                f"became {current.version} (another promotion won)."
            )
        storage.write_text(uri, text)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold the champion folder's lock (see the module docstring) for the block.

    Raises:
        PromotionConflictError: Another promotion held it for over ``LOCK_WAIT_S`` seconds.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_FILE
    if lock.is_dir() or (lock.exists() and not lock.is_file()):
        raise storage.StorageError(
            f"{lock} is not a file: it is the lock file that promotions write (pid, host, since), "
            f"and something else is in its place. Remove it (rmdir {lock}) and promote again."
        )
    handle = os.open(folder, os.O_RDONLY)
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise PromotionConflictError(
                        f"{lock} has been held by {_holder(lock)} for over {LOCK_WAIT_S:.0f} s "
                        "(another promotion is running): wait for it to finish and promote again."
                    ) from None
                time.sleep(0.02)
        since = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
        storage.write_text(lock, json.dumps(holder))  # replaces one a killed holder left
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
    finally:
        os.close(handle)  # releases the flock


def _holder(lock: Path) -> str:
    """Who holds the lock, as its lock file says."""
    try:
        holder = json.loads(lock.read_text())
        return f"pid {holder['pid']} on {holder['host']} (since {holder['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another promotion"


def _discard(champion_uri: str, version: int, written: list[str]) -> None:
    """Delete what a failed promotion wrote, unless champion.json names ``version``.

    The pointer names a version as champion (``version``) or as the previous one; when it cannot
    be read, nothing is deleted.
    """
    try:
        current = read_pointer(champion_uri).record
    except Exception:
        return
    if current and version in (current.version, current.previous_version):
        return
    _delete_all(written)


def _delete_all(uris: list[str]) -> None:
    for uri in reversed(uris):
        storage.delete(uri)
    for uri in uris[:1]:
        if not storage.is_remote(uri):  # local folders: remove versions/vN (and versions/) if empty
            for folder in (Path(uri).parent, Path(uri).parent.parent):
                try:
                    folder.rmdir()
                except OSError:
                    break
