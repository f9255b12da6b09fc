"""Where the photos come from: fingerprint a source, bring it to a local folder, find the images.

A source is a local folder (used as is), a ``.zip``/``.tar(.gz)`` archive (extracted safely, see
``archives``), a ``gs://`` prefix or archive object (downloaded), or an ``http(s)://`` URL
(downloaded once, streamed, optionally sha256-checked, into ``config.cache_dir()``). Its labelled
images have Kaggle names (``cat.<id>.jpg``) or sit in class folders (``Cat/``, ``dogs/``, any case,
at any depth, e.g. Microsoft's ``PetImages/Cat``).

Names that could reach outside the source are quarantined with a reason, never read: a symbolic
link whose target is missing or lies outside the source folder (links inside it are followed;
links to folders are not descended into), and a gs:// object whose name has ``.``, ``..`` or empty
parts or is also the folder of other objects. Credentials in a URL (``user:password@``, signed-URL
signatures) are redacted (``redact``) wherever the source is recorded or shown.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from catsdogs.components.common import config, records, storage, tempdirs
from catsdogs.components.common.errors import SourceError
from catsdogs.components.common.images import IMAGE_SUFFIXES
from catsdogs.components.common.redaction import redact
from catsdogs.components.prepare_dataset import archives

DEFAULT_SOURCE = (
    "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/"
    "kagglecatsanddogs_5340.zip"
)
_HEAD_KEYS = ("ETag", "Last-Modified", "Content-Length")
_FOLDER_CLASSES = {name: cls for cls in records.CLASSES for name in (cls, f"{cls}s")}  # Cat/, dogs/
_KAGGLE_NAME = re.compile(rf"^({'|'.join(records.CLASSES)})\..+$", re.IGNORECASE)  # cat.1.jpg
_SKIPPED_DIRS = {"__macosx", ".git"}
_DOWNLOAD_WORKERS = 8


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


def check_source(source: str) -> None:
    """Refuse an empty or blank source before it can mean "the current folder".

    Raises:
        SourceError: ``source`` is empty, blank or a gs:// / s3:// URI without a bucket.
    """
    if not source.strip():
        raise SourceError(
            f"The source is empty ({source!r}). Pass --source a folder, a .zip/.tar(.gz) archive, "
            "a gs://bucket/prefix, an s3://bucket/prefix or an https:// URL."
        )
    if storage.names_no_bucket(source):
        scheme = source.split("://")[0]
        raise SourceError(
            f"The source {source!r} names no bucket; expected {scheme}://bucket/prefix."
        )


def source_fingerprint(source: str) -> str:
    """A cheap identity of the source's current content, for caching and provenance.

    gs:// and s3://: object names, sizes and generations or ETags (one listing); local: relative names, sizes and
    modification times; http(s): the URL with ETag, Last-Modified and Content-Length from a HEAD.

    Raises:
        SourceError: The source is empty, does not exist or cannot be reached.
    """
    check_source(source)
    if _is_url(source):
        headers = _head(source)
        return _digest("url", [source, *(f"{k}={headers.get(k, '')}" for k in _HEAD_KEYS)])
    if storage.is_remote(source):
        _, name = storage.split_remote(source)
        kind = source.split("://")[0]  # "gs" or "s3"
        if name and not name.endswith("/") and storage.exists(source):
            info = storage.stat(source)
            return _digest(kind, [source, f"{info.size}", f"{info.generation}"])
        objects = storage.list_objects(source)
        if not objects:
            raise SourceError(
                f"Source {source} holds no objects. Expected a {kind}:// prefix with images (or "
                "an archive object); check the URI."
            )
        return _digest(kind, [f"{n}\t{i.size}\t{i.generation}" for n, i in objects])
    path = Path(source)
    if path.is_file():
        st = path.stat()
        return _digest("file", [path.name, f"{st.st_size}", f"{st.st_mtime_ns}"])
    if path.is_dir():
        lines = []
        for name in walk(path):
            file = path / name
            st = file.stat() if file.exists() else file.lstat()  # lstat: a dangling link
            lines.append(f"{name}\t{st.st_size}\t{st.st_mtime_ns}")
        return _digest("dir", sorted(lines))
    raise SourceError(
        f"Source {source} does not exist. Expected a folder, a .zip/.tar/.tar.gz archive, a "
        "gs:// or s3://bucket/prefix or an https:// URL; fix --source."
    )


def _head(url: str) -> dict[str, str]:
    import requests

    try:
        response = requests.head(url, allow_redirects=True, timeout=30)
    except requests.RequestException as error:
        raise SourceError(
            f"Could not reach {redact(url)} ({type(error).__name__}). Check the URL and the "
            "network, or download the archive yourself and pass its local path with --source."
        ) from None  # the library's error repeats the URL, credentials included
    if response.status_code >= 400:
        raise SourceError(
            f"Could not read {redact(url)}: HTTP {response.status_code}. Check the URL, or "
            "download the archive yourself and pass its local path with --source."
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
                    f"Could not download {redact(url)}: HTTP {response.status_code}. Check the "
                    "URL, or download the archive yourself and pass its local path with --source."
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
                f"Downloaded {redact(url)} has sha256 {digest.hexdigest()}, expected "
                f"{expected_sha256}. "
                "The file changed upstream or was corrupted in transit: check --sha256 or retry."
            )
        os.replace(partial, target)
    except requests.RequestException as error:
        raise SourceError(
            f"Could not download {redact(url)} ({type(error).__name__}: {redact(str(error))}). "
            "Check the network, or download the archive yourself and pass its local path with "
            "--source."
        ) from None  # the library's error repeats the URL, credentials included
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
    with tempdirs.temporary("source") as work:
        if _is_url(source):
            archive = _download(source, sha256, fingerprint)
        elif storage.is_remote(source):
            _, name = storage.split_remote(source)
            if name and not name.endswith("/") and storage.exists(source):
                archive = work / (PurePosixPath(name).name or "archive")
                storage.download_file(source, archive)
            else:
                folder = work / "files"
                yield Local(folder, _download_objects(source, folder))
                return
        elif Path(source).is_file():
            archive = Path(source)
        else:
            yield Local(Path(source), [])
            return
        folder = work / "extracted"
        folder.mkdir()
        yield Local(folder, archives.extract(archive, folder, redact(source)))


def _download_objects(prefix: str, folder: Path) -> list[records.Quarantined]:
    """Download the objects under ``prefix`` into ``folder``; returns those with unsafe names."""
    names = storage.list_files(prefix)
    folders = {
        "/".join(name.split("/")[:i]) for name in names for i in range(1, name.count("/") + 1)
    }
    rejected, safe = [], []
    for name in names:
        if any(part in ("", ".", "..") for part in name.split("/")):
            reason = "unsafe object name: '.', '..' or an empty part in its path (not downloaded)"
        elif name in folders:
            reason = "unsafe object name: also the folder of other objects (not downloaded)"
        else:
            safe.append(name)
            continue
        rejected.append(records.Quarantined(name, reason))
    folder.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(_DOWNLOAD_WORKERS) as pool:
        list(
            pool.map(
                lambda name: storage.download_file(storage.join(prefix, name), folder / name), safe
            )
        )
    return rejected


def link_problem(root: Path, name: str) -> str | None:
    """Why the file ``name`` below ``root`` must not be read (a bad symbolic link), or None."""
    path = root / name
    if not path.is_symlink():
        return None
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing target, or a loop of links
        return "dangling symbolic link: its target does not exist (not read)"
    if not target.is_relative_to(root.resolve()):
        return "symbolic link to a file outside the source folder (not followed)"
    return None


def _label_of(name: str) -> int | None:
    parts = name.split("/")
    for folder in reversed(parts[:-1]):
        if folder.lower() in _FOLDER_CLASSES:
            return records.CLASSES.index(_FOLDER_CLASSES[folder.lower()])
    match = _KAGGLE_NAME.match(parts[-1])
    if match:
        return records.CLASSES.index(match.group(1).lower())
    return None


def scan(root: Path) -> tuple[list[Candidate], list[str], list[records.Quarantined]]:
    """The labelled image candidates below ``root``, the other files and the bad links, by name."""
    candidates, ignored, rejected = [], [], []
    for name in sorted(walk(root)):
        problem = link_problem(root, name)
        label = _label_of(name) if name.lower().endswith(IMAGE_SUFFIXES) else None
        if problem is not None:
            rejected.append(records.Quarantined(name, problem))
        elif label is None:
            ignored.append(name)
        else:
            candidates.append(Candidate(name, label, str(root / name)))
    return candidates, ignored, rejected


def links_not_followed(root: Path, rejected: list[records.Quarantined]) -> str:
    """A sentence on the symbolic links under ``root`` that were skipped, or ``""`` when none.

    ``rejected`` are ``scan``'s bad file links; links to folders are found here (``walk`` does
    not descend into them).
    """
    folders = []
    for folder, dirs, _ in os.walk(root):
        for name in dirs:
            if (Path(folder) / name).is_symlink():
                folders.append((Path(folder) / name).relative_to(root).as_posix())
    skipped = [*(f"{name}/" for name in folders), *(item.file for item in rejected)]
    if not skipped:
        return ""
    example = skipped[0]
    with contextlib.suppress(OSError):
        example = f"{example} -> {os.readlink(root / example.rstrip('/'))}"
    return (
        f" {len(skipped)} symbolic links were not followed (links to folders, and links to files "
        f"outside the source folder, are skipped; e.g. {example}): copy the photos into the "
        "folder, or point --source at the folder the links lead to."
    )


def first_entries(root: Path) -> str:
    """The first few entries of ``root`` (folders with a trailing /), for error messages."""
    try:
        entries = sorted(os.listdir(root))[:5]
    except OSError:
        return "nothing"
    shown = [e + "/" if (root / e).is_dir() else e for e in entries]
    return ", ".join(shown) if shown else "nothing"
