"""Turn a folder, archive, gs:// prefix or URL of cat and dog photos into a prepared dataset.

Steps (see ``prepare``):

1. Materialize the source as a local folder: a local folder as is; a ``.zip``/``.tar(.gz)`` archive
   extracted safely (members with ``../`` or absolute paths and links are quarantined, never
   written; an archive whose members would decompress absurdly (a zip bomb) is refused before
   anything is extracted); a ``gs://`` prefix or archive object downloaded; an ``http(s)://`` URL
   downloaded once (streamed, optional sha256 check) into ``config.cache_dir()``.
2. Find the labelled images: Kaggle names (``cat.<id>.jpg``) or class folders (``Cat/``, ``dogs/``,
   any case, at any depth, e.g. Microsoft's ``PetImages/Cat``).
3. Validate every image in worker processes on all cores: Pillow header check against
   ``Image.MAX_IMAGE_PIXELS`` (decompression bombs are quarantined, never decoded), JPEG draft mode
   when the image is downscaled anyway, a full ``load()``, EXIF orientation, RGB, downscale so the
   longer side is at most ``max_side``, re-encode as JPEG. Failures are quarantined with a reason.
4. Split deterministically and stratified: per class, the valid images are ordered by
   ``sha256(seed, relative name)``, so the split does not depend on the order files are listed in.
5. Write a few TFRecord shards per split, ``quality_report.md`` and, last, ``manifest.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import shutil
import stat
import statistics
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

from catsdogs.components.common import config, records, storage

DEFAULT_SOURCE = (
    "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/"
    "kagglecatsanddogs_5340.zip"
)
CLASSES = ("cat", "dog")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
REPORT = "quality_report.md"
SHARD_TARGET_BYTES = 100 * 1024 * 1024
# The draft (DCT-domain) downscale may land this much under max_side, which saves a resample.
DRAFT_TOLERANCE = 0.9
# Zip-bomb guards: a member (or a whole compressed tar) this large may not expand more than this.
BOMB_MIN_BYTES = 1024 * 1024
BOMB_MAX_RATIO = 100
_FOLDER_CLASSES = {"cat": "cat", "cats": "cat", "dog": "dog", "dogs": "dog"}
_KAGGLE_NAME = re.compile(r"^(cat|dog)\..+$", re.IGNORECASE)
_SKIPPED_DIRS = {"__macosx", ".git"}


class SourceError(ValueError):
    """A source that cannot be read or holds no usable images."""


class OutputError(ValueError):
    """An output location that already holds something we must not overwrite."""


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    """How to split and encode the dataset.

    By default each class gets ``train_per_class``/``val_per_class``/``test_per_class`` images (the
    classic 1000/500/500 experiment). When ``val_fraction`` or ``test_fraction`` is above 0, the
    split uses fractions of all valid images of each class instead and train gets the rest.
    """

    train_per_class: int = 1000
    val_per_class: int = 500
    test_per_class: int = 500
    val_fraction: float = 0.0
    test_fraction: float = 0.0
    seed: int = 1337
    max_side: int = 256
    jpeg_quality: int = 95
    workers: int = 0  # 0: all cores
    sha256: str = ""  # expected sha256 of a downloaded (http/https) source; "" skips the check

    def __post_init__(self) -> None:
        for name in ("train_per_class", "val_per_class", "test_per_class"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("val_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}.")
        if self.use_fractions:
            if self.val_fraction <= 0 or self.test_fraction <= 0:
                raise ValueError(
                    "val_fraction and test_fraction must both be above 0 when splitting by "
                    f"fractions, got val_fraction={self.val_fraction}, "
                    f"test_fraction={self.test_fraction}."
                )
            if self.val_fraction + self.test_fraction >= 1.0:
                raise ValueError(
                    "val_fraction + test_fraction must be below 1 (train gets the rest), got "
                    f"{self.val_fraction} + {self.test_fraction}."
                )
        if not 32 <= self.max_side <= 4096:
            raise ValueError(f"max_side must be in [32, 4096] pixels, got {self.max_side}.")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}.")
        if self.workers < 0:
            raise ValueError(f"workers must be 0 (all cores) or more, got {self.workers}.")
        if self.sha256 and not re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256):
            raise ValueError(f"sha256 must be 64 hex digits, got {self.sha256!r}.")

    @property
    def use_fractions(self) -> bool:
        """Whether the split is by fractions rather than per-class counts."""
        return self.val_fraction > 0 or self.test_fraction > 0

    def settings(self) -> dict[str, Any]:
        """The settings that determine the output (recorded in the manifest)."""
        split: dict[str, Any] = (
            {"val_fraction": self.val_fraction, "test_fraction": self.test_fraction}
            if self.use_fractions
            else {
                "train_per_class": self.train_per_class,
                "val_per_class": self.val_per_class,
                "test_per_class": self.test_per_class,
            }
        )
        return {
            **split,
            "seed": self.seed,
            "max_side": self.max_side,
            "jpeg_quality": self.jpeg_quality,
        }


@dataclasses.dataclass(frozen=True)
class PrepareResult:
    """What ``prepare`` wrote (or found already prepared)."""

    output: str
    manifest_uri: str
    source_fingerprint: str
    counts: dict[str, int]  # split -> images
    quarantined: int
    report: str  # the Markdown quality report
    already_prepared: bool = False


@dataclasses.dataclass(frozen=True)
class _Candidate:
    name: str  # relative to the source root, "/"-separated
    label: int
    path: str  # local file


@dataclasses.dataclass(frozen=True)
class _Outcome:
    ok: bool
    reason: str
    original: tuple[int, int]  # (width, height) from the header, (0, 0) when unknown
    encoded: tuple[int, int]
    nbytes: int
    spool: str = ""  # file holding the re-encoded JPEG (see validate_all), at ``offset``
    offset: int = 0

    def read(self) -> bytes:
        """The re-encoded JPEG bytes of a valid image."""
        with open(self.spool, "rb") as handle:
            handle.seek(self.offset)
            return handle.read(self.nbytes)


# ------------------------------------------------------------------------------ fingerprints


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
        bucket, name = storage.split_gcs(source)
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
        for name in _walk(path):
            st = (path / name).stat()
            lines.append(f"{name}\t{st.st_size}\t{st.st_mtime_ns}")
        return _digest("dir", sorted(lines))
    raise SourceError(
        f"Source {source} does not exist. Expected a folder, a .zip/.tar/.tar.gz archive, a "
        "gs://bucket/prefix or an https:// URL; fix --source."
    )


_HEAD_KEYS = ("ETag", "Last-Modified", "Content-Length")


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


# ------------------------------------------------------------------------------ materializing


def _walk(root: Path) -> list[str]:
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


def _extract_zip(archive: Path, root: Path) -> list[dict[str, str]]:
    rejected: list[dict[str, str]] = []
    with zipfile.ZipFile(archive) as zf:
        members = []
        for info in zf.infolist():
            reason = _unsafe_reason(info.filename)
            mode = info.external_attr >> 16
            if reason is None and stat.S_ISLNK(mode):
                reason = "unsafe archive member: symbolic link (not extracted)"
            if reason:
                rejected.append({"file": info.filename, "reason": reason})
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


def _extract_tar(archive: Path, root: Path) -> list[dict[str, str]]:
    rejected: list[dict[str, str]] = []
    with tarfile.open(archive, "r:*") as tf:
        members = []
        for member in tf.getmembers():
            reason = _unsafe_reason(member.name)
            if reason is None and (member.issym() or member.islnk()):
                reason = "unsafe archive member: link (not extracted)"
            elif reason is None and not (member.isfile() or member.isdir()):
                reason = "unsafe archive member: device or special file (not extracted)"
            if reason:
                rejected.append({"file": member.name, "reason": reason})
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


def _extract(archive: Path, root: Path, label: str) -> list[dict[str, str]]:
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


@contextlib.contextmanager
def _materialize(source: str, fingerprint: str, cfg: PrepareConfig) -> Iterator[_Local]:
    """A local folder with the source's files, plus archive members rejected while extracting."""
    with tempfile.TemporaryDirectory(prefix="catsdogs-src-") as tmp:
        work = Path(tmp)
        archive: Path | None = None
        if _is_url(source):
            archive = _download(source, cfg.sha256, fingerprint)
        elif storage.is_gcs(source):
            _, name = storage.split_gcs(source)
            if name and not name.endswith("/") and storage.exists(source):
                archive = work / (PurePosixPath(name).name or "archive")
                storage.download_file(source, archive)
            else:
                folder = work / "files"
                storage.download_dir(source, folder)
                yield _Local(folder, [])
                return
        elif Path(source).is_file():
            archive = Path(source)
        else:
            yield _Local(Path(source), [])
            return
        folder = work / "extracted"
        folder.mkdir()
        rejected = _extract(archive, folder, source)
        yield _Local(folder, rejected)


@dataclasses.dataclass(frozen=True)
class _Local:
    root: Path
    rejected: list[dict[str, str]]


# ------------------------------------------------------------------------------ scanning


def _label_of(name: str) -> int | None:
    parts = name.split("/")
    for folder in reversed(parts[:-1]):
        if folder.lower() in _FOLDER_CLASSES:
            return CLASSES.index(_FOLDER_CLASSES[folder.lower()])
    match = _KAGGLE_NAME.match(parts[-1])
    if match:
        return CLASSES.index(match.group(1).lower())
    return None


def _scan(root: Path, names: list[str]) -> tuple[list[_Candidate], list[str]]:
    """Split file names into labelled image candidates and ignored files (sorted by name)."""
    candidates, ignored = [], []
    for name in sorted(names):
        label = _label_of(name) if name.lower().endswith(IMAGE_SUFFIXES) else None
        if label is None:
            ignored.append(name)
        else:
            candidates.append(_Candidate(name, label, str(root / name)))
    return candidates, ignored


def _first_entries(root: Path) -> str:
    try:
        entries = sorted(os.listdir(root))[:5]
    except OSError:
        return "nothing"
    shown = [e + "/" if (root / e).is_dir() else e for e in entries]
    return ", ".join(shown) if shown else "nothing"


# ------------------------------------------------------------------------------ validation


def validate_image(
    path: str, max_side: int, quality: int, encode: bool = True
) -> tuple[_Outcome, bytes]:
    """Fully decode one image and re-encode it; a failure comes back as a quarantine reason.

    Args:
        path: Local file.
        max_side: Longest side of the re-encoded image (smaller images are not enlarged).
        quality: JPEG quality of the re-encoded image.
        encode: False stops after the checks and the decode (the benchmark times that part).

    Returns:
        The outcome and the JPEG bytes (empty when the image is quarantined).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    original = (0, 0)
    try:
        if os.path.getsize(path) == 0:
            return _Outcome(False, "empty file (0 bytes)", original, (0, 0), 0), b""
        limit = Image.MAX_IMAGE_PIXELS
        with _header_only_bomb_check(Image):
            opened = Image.open(path)  # reads the header only
        with opened as image:
            original = image.size
            width, height = original
            if limit and width * height > limit:
                return _bomb(width, height, limit, original), b""
            scale = max_side / max(width, height)
            if image.format == "JPEG" and scale < 1:
                # DCT-domain downscale: Pillow picks the largest 1/2, 1/4, 1/8 still >= this size.
                image.draft(
                    None,
                    (
                        max(1, int(width * scale * DRAFT_TOLERANCE)),
                        max(1, int(height * scale * DRAFT_TOLERANCE)),
                    ),
                )
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            rgb = image if image.mode == "RGB" else image.convert("RGB")
        if not encode:
            return _Outcome(True, "", original, rgb.size, 0), b""
        if max(rgb.size) > max_side:
            scale = max_side / max(rgb.size)
            size = (max(1, round(rgb.size[0] * scale)), max(1, round(rgb.size[1] * scale)))
            # Area averaging (like OpenCV's INTER_AREA), the same filter the DCT scaling applies.
            rgb = rgb.resize(size, Image.Resampling.BOX)
        buffer = io.BytesIO()
        rgb.save(buffer, "JPEG", quality=quality)
    except Image.DecompressionBombError:
        width, height = original
        return _bomb(width, height, Image.MAX_IMAGE_PIXELS or 0, original), b""
    except UnidentifiedImageError:
        reason = "not an image: Pillow cannot identify the file format"
        return _Outcome(False, reason, original, (0, 0), 0), b""
    except Exception as error:  # noqa: BLE001 - any decode failure quarantines the file
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "truncated" in message.lower():
            # Pillow words it differently by where the data ends ("image file is truncated (2
            # bytes not processed)", "Truncated File Read"): one reason, the detail in brackets.
            reason = f"cannot decode: image file is truncated ({message})"
        else:
            reason = f"cannot decode: {message}"
        return _Outcome(False, reason, original, (0, 0), 0), b""
    data = buffer.getvalue()
    return _Outcome(True, "", original, rgb.size, len(data)), data


@contextlib.contextmanager
def _header_only_bomb_check(pil_image: Any) -> Iterator[None]:
    """Let ``Image.open`` read any header, so the caller checks (and reports) the size itself."""
    limit = pil_image.MAX_IMAGE_PIXELS
    pil_image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        pil_image.MAX_IMAGE_PIXELS = limit


def _bomb(width: int, height: int, limit: int, original: tuple[int, int]) -> _Outcome:
    declared = f"{width}x{height} = {width * height:,} pixels" if width else "too many pixels"
    reason = f"decompression bomb: header declares {declared} (limit {limit:,}); not decoded"
    return _Outcome(False, reason, original, (0, 0), 0)


_SPOOLS: dict[str, Any] = {}  # spool folder -> this process's append-only file in it


def _validate_to_spool(task: tuple[str, str, int, int, bool]) -> _Outcome:
    """Validate one image and append its JPEG to this process's spool file.

    One append-only file per process (not a file per image: creating files is slow on some file
    systems); unbuffered, so nothing is lost when a pool worker exits.
    """
    path, spool, max_side, quality, encode = task
    outcome, data = validate_image(path, max_side, quality, encode)
    if not outcome.ok or not encode:
        return outcome
    handle = _SPOOLS.get(spool)
    if handle is None:
        handle = _SPOOLS[spool] = open(  # noqa: SIM115 - closed by validate_all / process exit
            os.path.join(spool, f"{os.getpid()}.bin"), "ab", buffering=0
        )
    offset = handle.tell()
    handle.write(data)
    return dataclasses.replace(outcome, spool=handle.name, offset=offset)


def _workers(requested: int) -> int:
    if requested:
        return requested
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _process_context() -> Any:
    """The start method for the validation workers.

    fork when this process runs no other threads (cheapest, and the caller's script needs no
    ``__main__`` guard); forkserver when it does (TensorFlow, gRPC...), where a fork could copy a
    lock another thread holds. tqdm's own monitor thread does not count: it only sleeps.
    """
    import multiprocessing
    import threading

    if (
        all(t is threading.main_thread() or t.name == "tqdm_monitor" for t in threading.enumerate())
        and "tensorflow" not in sys.modules
        and "fork" in multiprocessing.get_all_start_methods()
    ):
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "PIL.Image", "PIL.ImageOps"])
    return context


def validate_all(
    paths: list[str],
    spool: Path,
    max_side: int,
    quality: int,
    workers: int = 0,
    progress: bool = True,
    encode: bool = True,
) -> list[_Outcome]:
    """Validate ``paths`` on ``workers`` processes (0: all cores); valid JPEGs land in ``spool``.

    With ``encode=False`` only the checks and the decode run (nothing is spooled).

    Returns:
        One outcome per path, in order; ``outcome.read()`` gives a valid image's JPEG bytes.
    """
    from tqdm import tqdm

    tasks = [(p, str(spool), max_side, quality, encode) for p in paths]
    count = _workers(workers)
    bar = tqdm(
        total=len(tasks),
        desc="Validating",
        unit="img",
        disable=not progress,
        mininterval=0.5 if sys.stderr.isatty() else 15,  # a log line every 15 s in pipelines
    )
    outcomes: list[_Outcome] = []
    with bar:
        if count == 1 or len(tasks) < 2:
            try:
                for task in tasks:
                    outcomes.append(_validate_to_spool(task))
                    bar.update()
            finally:
                handle = _SPOOLS.pop(str(spool), None)
                if handle is not None:
                    handle.close()
            return outcomes
        context = _process_context()
        chunk = max(1, min(32, len(tasks) // (count * 8)))
        with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
            for outcome in pool.map(_validate_to_spool, tasks, chunksize=chunk):
                outcomes.append(outcome)
                bar.update()
    return outcomes


# ------------------------------------------------------------------------------ splitting


def split_key(seed: int, name: str) -> str:
    """The order key of one image within its class: independent of listing order."""
    return hashlib.sha256(f"{seed}\n{name}".encode()).hexdigest()


def _split_sizes(cfg: PrepareConfig, available: dict[str, int], source: str) -> dict[str, int]:
    """Per class, how many images go to train/val/test; a clear error when there are too few."""
    sizes: dict[str, dict[str, int]] = {}
    for cls in CLASSES:
        n = available[cls]
        if cfg.use_fractions:
            val = round(n * cfg.val_fraction)
            test = round(n * cfg.test_fraction)
            wanted = {"train": n - val - test, "val": val, "test": test}
            if min(wanted.values()) < 1:
                raise SourceError(
                    f"Too few images under {source} for the requested fractions: {cls} has {n} "
                    f"valid images, which gives train/val/test = {wanted['train']}/{wanted['val']}"
                    f"/{wanted['test']}. Use larger fractions or add images."
                )
        else:
            wanted = {
                "train": cfg.train_per_class,
                "val": cfg.val_per_class,
                "test": cfg.test_per_class,
            }
            need = sum(wanted.values())
            if n < need:
                raise SourceError(
                    f"Too few images under {source}: {cls} has {n} valid images, but train/val/"
                    f"test per class = {wanted['train']}+{wanted['val']}+{wanted['test']} = "
                    f"{need}. Pass smaller --train-per-class/--val-per-class/--test-per-class, "
                    "or split all images with --val-fraction 0.2 --test-fraction 0.2."
                )
        sizes[cls] = wanted
    return {f"{cls}/{split}": sizes[cls][split] for cls in CLASSES for split in records.SPLITS}


def assign_splits(
    items: list[tuple[str, int]], cfg: PrepareConfig, source: str
) -> dict[str, list[tuple[str, int]]]:
    """Stratified, deterministic split of ``(name, label)`` items into train/val/test.

    Each split lists its items ordered by ``split_key`` (a seeded shuffle), whatever order
    ``items`` came in.
    """
    by_class = {
        cls: sorted(
            (it for it in items if it[1] == index), key=lambda it: split_key(cfg.seed, it[0])
        )
        for index, cls in enumerate(CLASSES)
    }
    sizes = _split_sizes(cfg, {cls: len(v) for cls, v in by_class.items()}, source)
    out: dict[str, list[tuple[str, int]]] = {split: [] for split in records.SPLITS}
    for cls, ordered in by_class.items():
        start = 0
        for split in records.SPLITS:
            end = start + sizes[f"{cls}/{split}"]
            out[split].extend(ordered[start:end])
            start = end
    for split in records.SPLITS:
        out[split].sort(key=lambda it: split_key(cfg.seed, it[0]))
    return out


# ------------------------------------------------------------------------------ output


def _check_output(output: str, fingerprint: str, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The existing manifest when ``output`` already holds this exact dataset; else None.

    Raises:
        OutputError: ``output`` holds a dataset from another source or settings, or foreign files.
    """
    manifest_uri = storage.join(output, records.MANIFEST)
    if storage.exists(manifest_uri):
        manifest = records.load_manifest(output)
        if (
            manifest.get("source_fingerprint") == fingerprint
            and manifest.get("settings") == settings
        ):
            return manifest
        old = manifest.get("settings") or {}
        changes = [
            f"{key}={old.get(key)} (now {settings.get(key)})"
            for key in sorted(set(old) | set(settings))
            if old.get(key) != settings.get(key)
        ]
        if manifest.get("source_fingerprint") != fingerprint:
            changes.insert(0, f"source {manifest.get('source', '?')} as it was then")
        raise OutputError(
            f"Refusing to overwrite {output}: it holds a dataset prepared with different inputs "
            f"({'; '.join(changes)}). Choose another --output or delete the old dataset first."
        )
    if storage.is_gcs(output) or Path(output).is_dir():
        foreign = [n for n in storage.list_files(output) if not _is_ours(n)]
        if foreign:
            raise OutputError(
                f"Refusing to write into {output}: it already holds files that are not part of a "
                f"prepared dataset (first: {', '.join(foreign[:3])}). Choose an empty --output."
            )
    return None


def _is_ours(name: str) -> bool:
    return (
        name == REPORT
        or re.fullmatch(r"(train|val|test)-\d{5}-of-\d{5}\.tfrecord", name) is not None
    )


def _already_prepared(output: str, manifest: dict[str, Any]) -> bool:
    """Whether every shard the manifest lists is present with its recorded size."""
    for split in records.SPLITS:
        for shard in manifest["splits"][split]["shards"]:
            uri = storage.join(output, shard["file"])
            try:
                if storage.stat(uri).size != shard["size"]:
                    return False
            except FileNotFoundError:
                return False
    return True


def _write_shards(
    folder: Path, split: str, items: list[tuple[str, int]], outcomes: dict[str, _Outcome]
) -> list[dict[str, Any]]:
    total = sum(outcomes[name].nbytes for name, _ in items)
    count = max(1, math.ceil(total / SHARD_TARGET_BYTES))
    shards = []
    for index in range(count):
        part = items[index * len(items) // count : (index + 1) * len(items) // count]
        batch = [(outcomes[name].read(), label, name) for name, label in part]
        shards.append(records.write_shard(folder / records.shard_name(split, index, count), batch))
    return shards


def _report(
    source: str,
    fingerprint: str,
    manifest: dict[str, Any],
    found: dict[str, int],
    ignored: list[str],
    outcomes: dict[str, _Outcome],
    seconds: float,
) -> str:
    valid = [o for o in outcomes.values() if o.ok]
    lines = [
        "# Data quality report",
        "",
        f"- Source: `{source}`",
        f"- Source fingerprint: `{fingerprint}`",
        f"- Labelled images found: {sum(found.values())} "
        f"({', '.join(f'{c}: {n}' for c, n in found.items())})",
        f"- Valid: {len(valid)}; quarantined: {len(manifest['quarantined'])}; other files "
        f"ignored (no image suffix or no class): {len(ignored)}",
        f"- Settings: {json.dumps(manifest['settings'], sort_keys=True)}",
        f"- Validation time: {seconds:.1f} s ({len(outcomes) / max(seconds, 1e-9):.0f} images/s)",
        "",
        "## Splits",
        "",
        "| split | images | " + " | ".join(CLASSES) + " | shards | MB |",
        "|---|---|" + "---|" * len(CLASSES) + "---|---|",
    ]
    for split in records.SPLITS:
        entry = manifest["splits"][split]
        size = sum(s["size"] for s in entry["shards"]) / 1e6
        per_class = " | ".join(str(entry["per_class"][c]) for c in CLASSES)
        lines.append(
            f"| {split} | {entry['count']} | {per_class} | {len(entry['shards'])} | {size:.1f} |"
        )
    if valid:
        sides = [max(o.original) for o in valid]
        out_sides = [max(o.encoded) for o in valid]
        lines += [
            "",
            "## Image sizes (longer side, pixels)",
            "",
            "| | min | median | max |",
            "|---|---|---|---|",
            f"| source | {min(sides)} | {statistics.median(sides):g} | {max(sides)} |",
            f"| stored | {min(out_sides)} | {statistics.median(out_sides):g} | {max(out_sides)} |",
            "",
            f"Stored JPEG bytes per image: median {statistics.median(o.nbytes for o in valid):g}.",
        ]
    lines += ["", f"## Quarantined ({len(manifest['quarantined'])})", ""]
    if manifest["quarantined"]:
        lines += ["| file | reason |", "|---|---|"]
        lines += [f"| `{q['file']}` | {q['reason']} |" for q in manifest["quarantined"][:500]]
        if len(manifest["quarantined"]) > 500:
            lines.append(f"| ... | {len(manifest['quarantined']) - 500} more in manifest.json |")
    else:
        lines.append("None.")
    if ignored:
        lines += ["", f"Ignored files (first {min(len(ignored), 10)}): "]
        lines += [f"- `{name}`" for name in ignored[:10]]
    return "\n".join(lines) + "\n"


def prepare(
    source: str,
    output: str,
    cfg: PrepareConfig | None = None,
    *,
    report_path: str | None = None,
    progress: bool = True,
) -> PrepareResult:
    """Validate, split and write the dataset of ``source`` to ``output`` (local or gs://).

    Args:
        source: Folder, .zip/.tar(.gz) archive, gs:// prefix or archive object, or http(s) URL.
        output: Folder or gs:// prefix for the shards, ``quality_report.md`` and ``manifest.json``.
        cfg: Split and encoding settings (defaults: 1000/500/500 per class, seed 1337).
        report_path: Also write the Markdown quality report here (e.g. a KFP Markdown artifact).
        progress: Show progress bars on stderr.

    Raises:
        SourceError: The source is missing, unreadable, unsafe or has too few usable images.
        OutputError: ``output`` already holds a different dataset or foreign files.
    """
    cfg = cfg or PrepareConfig()
    settings = cfg.settings()
    fingerprint = source_fingerprint(source)
    existing = _check_output(output, fingerprint, settings)
    if existing is not None and _already_prepared(output, existing):
        report = storage.read_text(storage.join(output, REPORT))
        if report_path:
            Path(report_path).parent.mkdir(parents=True, exist_ok=True)
            Path(report_path).write_text(report)
        return _result(output, existing, report, already_prepared=True)
    with (
        _materialize(source, fingerprint, cfg) as local,
        tempfile.TemporaryDirectory(prefix="catsdogs-spool-") as spool,
    ):
        candidates, ignored = _scan(local.root, _walk(local.root))
        found = {cls: sum(1 for c in candidates if c.label == i) for i, cls in enumerate(CLASSES)}
        if not candidates or min(found.values()) == 0:
            raise SourceError(
                "Expected a folder of <class>.<id>.jpg files or <class>/ subfolders (cat, dog) "
                f"under {source}, found {found['cat']} cat and {found['dog']} dog images (first "
                f"entries: {_first_entries(local.root)})."
            )
        _split_sizes(cfg, found, source)  # fail fast, before decoding anything
        started = time.perf_counter()
        results = validate_all(
            [c.path for c in candidates],
            Path(spool),
            cfg.max_side,
            cfg.jpeg_quality,
            cfg.workers,
            progress,
        )
        seconds = time.perf_counter() - started
        outcomes = {c.name: o for c, o in zip(candidates, results, strict=True)}
        valid = [(c.name, c.label) for c, o in zip(candidates, results, strict=True) if o.ok]
        quarantined = sorted(
            [
                *local.rejected,
                *({"file": n, "reason": o.reason} for n, o in outcomes.items() if not o.ok),
            ],
            key=lambda q: q["file"],
        )
        valid_found = {cls: sum(1 for _, lb in valid if lb == i) for i, cls in enumerate(CLASSES)}
        if min(valid_found.values()) == 0:
            raise SourceError(
                f"Expected valid images of both classes under {source}, found "
                f"{valid_found['cat']} valid cat and {valid_found['dog']} valid dog images "
                f"({len(quarantined)} quarantined, e.g. {quarantined[:1]}). Fix or replace the files."
            )
        assigned = assign_splits(valid, cfg, source)
        manifest: dict[str, Any] = {
            "classes": list(CLASSES),
            "splits": {},
            "quarantined": quarantined,
            "seed": cfg.seed,
            "source": source,
            "source_fingerprint": fingerprint,
            "settings": settings,
            "found": {"per_class": found, "ignored": len(ignored)},
            "format": {
                "records": "tfrecord",
                "image": "jpeg",
                "features": ["image", "label", "id"],
            },
        }
        if existing is not None:  # same dataset, but shards are missing: redo it, manifest first
            storage.delete(storage.join(output, records.MANIFEST))
        if storage.is_gcs(output) or Path(output).is_dir():
            for name in storage.list_files(output):
                if _is_ours(name):  # leftovers of an unfinished run (there is no manifest)
                    storage.delete(storage.join(output, name))
        with storage.output_dir(output) as folder:
            for split in records.SPLITS:
                items = assigned[split]
                shards = _write_shards(folder, split, items, outcomes)
                manifest["splits"][split] = {
                    "count": len(items),
                    "per_class": {
                        cls: sum(1 for _, lb in items if lb == i) for i, cls in enumerate(CLASSES)
                    },
                    "shards": shards,
                }
            report = _report(source, fingerprint, manifest, found, ignored, outcomes, seconds)
            (folder / REPORT).write_text(report)
    records.write_manifest(output, manifest)  # last: only now is the folder a dataset
    if report_path:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(report_path).write_text(report)
    return _result(output, manifest, report, already_prepared=False)


def _result(
    output: str, manifest: dict[str, Any], report: str, *, already_prepared: bool
) -> PrepareResult:
    return PrepareResult(
        output=output,
        manifest_uri=storage.join(output, records.MANIFEST),
        source_fingerprint=manifest["source_fingerprint"],
        counts={split: manifest["splits"][split]["count"] for split in records.SPLITS},
        quarantined=len(manifest["quarantined"]),
        report=report,
        already_prepared=already_prepared,
    )
