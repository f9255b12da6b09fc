"""Where the photos come from: fingerprint a source, bring it to a local folder, find the images.

A source is a local folder (used as is), a ``.zip``/``.tar(.gz)`` archive (extracted safely, see
``archives``), a ``gs://`` prefix or archive object (downloaded), or an ``http(s)://`` URL
(downloaded once, streamed, optionally sha256-checked, into ``config.cache_dir()``). Its labelled
images have Kaggle names (``cat.<id>.jpg``) or sit in class folders (``Cat/``, ``dogs/``, any case,
at any depth, e.g. Microsoft's ``PetImages/Cat``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from catsdogs.components.common import config, records, storage
from catsdogs.components.common.errors import SourceError
from catsdogs.components.common.images import IMAGE_SUFFIXES
from catsdogs.components.prepare_dataset import archives

DEFAULT_SOURCE = (
    "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/"
    "kagglecatsanddogs_5340.zip"
)
_HEAD_KEYS = ("ETag", "Last-Modified", "Content-Length")
_FOLDER_CLASSES = {name: cls for cls in records.CLASSES for name in (cls, f"{cls}s")}  # Cat/, dogs/
_KAGGLE_NAME = re.compile(rf"^({'|'.join(records.CLASSES)})\..+$", re.IGNORECASE)  # cat.1.jpg
_SKIPPED_DIRS = {"__macosx", ".git"}


@dataclasses.dataclass(frozen=True)
class Local:
    """A source as a local folder, plus the archive members refused while extracting it."""

    root: Path
    rejected: list[records.Quarantined]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A labelled image file of the source."""

    name: str  # relative to the source root, "/"-separated
    label: int
    path: str  # local file


def _digest(kind: str, lines: list[str]) -> str:
    digest = hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()
    return f"{kind}:{digest[:32]}"


def _is_url(source: str) -> bool:
    return source.startswith(("https://", "http://"))


def source_fingerprint(source: str) -> str:
    """A cheap identity of the source's current content, for caching and provenance.

    gs://: object names, sizes and generations (one listing); local: relative names, sizes and
    modification times; http(s): the URL with ETag, Last-Modified and Content-Length from a HEAD.

    Raises:
        SourceError: The source does not exist or cannot be reached.
    """
    if _is_url(source):
        headers = _head(source)
        return _digest("url", [source, *(f"{k}={headers.get(k, '')}" for k in _HEAD_KEYS)])
    if storage.is_gcs(source):
        _, name = storage.split_gcs(source)
        if name and not name.endswith("/") and storage.exists(source):
            info = storage.stat(source)
            return _digest("gs", [source, f"{info.size}", f"{info.generation}"])
        objects = storage.list_objects(source)
        if not objects:
            raise SourceError(
                f"Source {source} holds no objects. Expected a gs:// prefix with images (or an "
                "archive object); check the URI."
            )
        return _digest("gs", [f"{n}\t{i.size}\t{i.generation}" for n, i in objects])
    path = Path(source)
    if path.is_file():
        st = path.stat()
        return _digest("file", [path.name, f"{st.st_size}", f"{st.st_mtime_ns}"])
    if path.is_dir():
        lines = []
        for name in walk(path):
            st = (path / name).stat()
            lines.append(f"{name}\t{st.st_size}\t{st.st_mtime_ns}")
        return _digest("dir", sorted(lines))
    raise SourceError(
        f"Source {source} does not exist. Expected a folder, a .zip/.tar/.tar.gz archive, a "
        "gs://bucket/prefix or an https:// URL; fix --source."
    )


def _head(url: str) -> dict[str, str]:
    import requests

    try:
        response = requests.head(url, allow_redirects=True, timeout=30)
    except requests.RequestException as error:
        raise SourceError(
            f"Could not reach {url} ({type(error).__name__}). Check the URL and the network, or "
            "download the archive yourself and pass its local path with --source."
        ) from error
    if response.status_code >= 400:
        raise SourceError(
            f"Could not read {url}: HTTP {response.status_code}. Check the URL, or download the "
            "archive yourself and pass its local path with --source."
        )
    return {key: response.headers.get(key, "") for key in _HEAD_KEYS}


def walk(root: Path) -> list[str]:
    """Relative names of every file below ``root`` (hidden files and __MACOSX skipped)."""
    names = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d.lower() not in _SKIPPED_DIRS and not d.startswith(".")]
        rel = Path(folder).relative_to(root)
        for file in files:
            if not file.startswith("."):
                names.append((rel / file).as_posix())
    return names


def _download(url: str, expected_sha256: str, fingerprint: str) -> Path:
    """Download ``url`` into the cache once (streamed, sha256-checked); returns the local file."""
    import requests
    from tqdm import tqdm

    base = PurePosixPath(url.split("?", 1)[0]).name or "download"
    key = hashlib.sha256(f"{url}\n{fingerprint}".encode()).hexdigest()[:16]
    target = config.cache_dir() / "downloads" / f"{key}-{base}"
    if target.is_file():
        if not expected_sha256 or records.sha256_file(target) == expected_sha256.lower():
            return target
        target.unlink()  # a cached file that does not match: download again
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with requests.get(url, stream=True, timeout=(30, 300)) as response:
            if response.status_code >= 400:
                raise SourceError(
                    f"Could not download {url}: HTTP {response.status_code}. Check the URL, or "
                    "download the archive yourself and pass its local path with --source."
                )
            total = int(response.headers.get("Content-Length") or 0) or None
            with (
                open(partial, "wb") as handle,
                tqdm(total=total, unit="B", unit_scale=True, desc=f"Downloading {base}") as bar,
            ):
                for block in response.iter_content(1 << 20):
                    handle.write(block)
                    digest.update(block)
                    bar.update(len(block))
        if expected_sha256 and digest.hexdigest() != expected_sha256.lower():
            raise SourceError(
                f"Downloaded {url} has sha256 {digest.hexdigest()}, expected {expected_sha256}. "
                "The file changed upstream or was corrupted in transit: check --sha256 or retry."
            )
        os.replace(partial, target)
    except requests.RequestException as error:
        raise SourceError(
            f"Could not download {url} ({type(error).__name__}: {error}). Check the network, or "
            "download the archive yourself and pass its local path with --source."
        ) from error
    finally:
        partial.unlink(missing_ok=True)
    return target


@contextlib.contextmanager
def materialize(source: str, fingerprint: str, sha256: str = "") -> Iterator[Local]:
    """The source as a local folder (temporary unless the source is one), while the block runs.

    Args:
        source: Folder, archive, gs:// prefix or archive object, or http(s) URL.
        fingerprint: Its ``source_fingerprint`` (keys the download cache).
        sha256: Expected sha256 of a downloaded URL; "" skips the check.
    """
    with tempfile.TemporaryDirectory(prefix="catsdogs-src-") as tmp:
        work = Path(tmp)
        if _is_url(source):
            archive = _download(source, sha256, fingerprint)
        elif storage.is_gcs(source):
            _, name = storage.split_gcs(source)
            if name and not name.endswith("/") and storage.exists(source):
                archive = work / (PurePosixPath(name).name or "archive")
                storage.download_file(source, archive)
            else:
                folder = work / "files"
                storage.download_dir(source, folder)
                yield Local(folder, [])
                return
        elif Path(source).is_file():
            archive = Path(source)
        else:
            yield Local(Path(source), [])
            return
        folder = work / "extracted"
        folder.mkdir()
        yield Local(folder, archives.extract(archive, folder, source))


def _label_of(name: str) -> int | None:
    parts = name.split("/")
    for folder in reversed(parts[:-1]):
        if folder.lower() in _FOLDER_CLASSES:
            return records.CLASSES.index(_FOLDER_CLASSES[folder.lower()])
    match = _KAGGLE_NAME.match(parts[-1])
    if match:
        return records.CLASSES.index(match.group(1).lower())
    return None


def scan(root: Path) -> tuple[list[Candidate], list[str]]:
    """The labelled image candidates below ``root`` and the other files, each sorted by name."""
    candidates, ignored = [], []
    for name in sorted(walk(root)):
        label = _label_of(name) if name.lower().endswith(IMAGE_SUFFIXES) else None
        if label is None:
            ignored.append(name)
        else:
            candidates.append(Candidate(name, label, str(root / name)))
    return candidates, ignored


def first_entries(root: Path) -> str:
    """The first few entries of ``root`` (folders with a trailing /), for error messages."""
    try:
        entries = sorted(os.listdir(root))[:5]
    except OSError:
        return "nothing"
    shown = [e + "/" if (root / e).is_dir() else e for e in entries]
    return ", ".join(shown) if shown else "nothing"
