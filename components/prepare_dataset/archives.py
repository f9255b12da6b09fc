"""Safe extraction of a .zip or .tar(.gz) source.

Members with ``../`` or absolute paths, links and special files are quarantined, never written. An
archive whose members would decompress absurdly (a zip bomb) or would not fit on the disk is
refused before anything is extracted.
"""

from __future__ import annotations

import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from catsdogs.components.common.errors import SourceError
from catsdogs.components.common.records import Quarantined

# Zip-bomb guards: a member (or a whole compressed tar) this large may not expand more than this.
BOMB_MIN_BYTES = 1024 * 1024
BOMB_MAX_RATIO = 100


def extract(archive: Path, root: Path, label: str) -> list[Quarantined]:
    """Extract a zip or tar ``archive`` into ``root``; returns the members it refused.

    Args:
        archive: The local archive file.
        root: An empty folder to extract into.
        label: The source as the user gave it, for error messages.

    Raises:
        SourceError: The file is no archive, is corrupt, looks like a bomb or would not fit.
    """
    try:
        if zipfile.is_zipfile(archive):
            return _extract_zip(archive, root)
        try:
            is_tar = tarfile.is_tarfile(archive)
        except OSError:
            is_tar = False
        if is_tar:
            return _extract_tar(archive, root)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as error:
        if isinstance(error, OSError) and error.errno is not None:
            raise  # a real I/O problem (disk full, permissions), not a corrupt archive
        raise SourceError(
            f"Archive {label} is corrupt or truncated ({type(error).__name__}: {error}). "
            "Download it again (or pass --sha256 to check it) and retry."
        ) from error
    raise SourceError(
        f"Source {label} is a file but neither a zip nor a tar archive. Expected a folder, a "
        ".zip/.tar/.tar.gz archive, a gs:// prefix or an https:// URL; fix --source."
    )


def _unsafe_reason(name: str) -> str | None:
    """Why an archive member name must not be extracted, or None when it is safe."""
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized):
        return "unsafe archive member: absolute path (not extracted)"
    if ".." in PurePosixPath(normalized).parts:
        return "unsafe archive member: path with '..' escapes the target (not extracted)"
    return None


def _check_total(archive: Path, total: int, target: Path) -> None:
    free = shutil.disk_usage(target).free
    if total > free:
        raise SourceError(
            f"Refusing to extract {archive.name}: its members declare {total / 1e9:.1f} GB, more "
            f"than the {free / 1e9:.1f} GB free under {target}. Free some space, or set TMPDIR to "
            "a larger disk."
        )
    packed = max(archive.stat().st_size, 1)
    if total >= BOMB_MIN_BYTES and total / packed > BOMB_MAX_RATIO:
        raise SourceError(
            f"Refusing to extract {archive.name}: {packed} bytes would expand to {total} bytes "
            f"({total // packed}:1, limit {BOMB_MAX_RATIO}:1), which looks like a zip bomb. "
            "Use a normal archive of images."
        )


def _safe_target(root: Path, name: str) -> Path:
    target = (root / name.replace("\\", "/")).resolve()
    if not target.is_relative_to(root.resolve()):
        raise SourceError(f"Archive member {name!r} escapes the extraction folder; refusing it.")
    return target


def _extract_zip(archive: Path, root: Path) -> list[Quarantined]:
    rejected: list[Quarantined] = []
    with zipfile.ZipFile(archive) as zf:
        members = []
        for info in zf.infolist():
            reason = _unsafe_reason(info.filename)
            mode = info.external_attr >> 16
            if reason is None and stat.S_ISLNK(mode):
                reason = "unsafe archive member: symbolic link (not extracted)"
            if reason:
                rejected.append(Quarantined(info.filename, reason))
                continue
            if info.file_size >= BOMB_MIN_BYTES and (
                info.file_size / max(info.compress_size, 1) > BOMB_MAX_RATIO
            ):
                raise SourceError(
                    f"Refusing to extract {archive.name}: member {info.filename} expands from "
                    f"{info.compress_size} to {info.file_size} bytes "
                    f"({info.file_size // max(info.compress_size, 1)}:1, limit "
                    f"{BOMB_MAX_RATIO}:1), which looks like a zip bomb. Use a normal archive."
                )
            members.append(info)
        _check_total(archive, sum(m.file_size for m in members if not m.is_dir()), root)
        for info in members:
            target = _safe_target(root, info.filename)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)  # zipfile stops at the declared size
    return rejected


def _extract_tar(archive: Path, root: Path) -> list[Quarantined]:
    rejected: list[Quarantined] = []
    with tarfile.open(archive, "r:*") as tf:
        members = []
        for member in tf.getmembers():
            reason = _unsafe_reason(member.name)
            if reason is None and (member.issym() or member.islnk()):
                reason = "unsafe archive member: link (not extracted)"
            elif reason is None and not (member.isfile() or member.isdir()):
                reason = "unsafe archive member: device or special file (not extracted)"
            if reason:
                rejected.append(Quarantined(member.name, reason))
                continue
            members.append(member)
        _check_total(archive, sum(m.size for m in members if m.isfile()), root)
        for member in members:
            target = _safe_target(root, member.name)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tf.extractfile(member)
            if src is None:
                continue
            with src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    return rejected
