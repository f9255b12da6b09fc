"""Export a model folder (or the champion) as a TensorFlow SavedModel that KServe and TF Serving load.

Layout written under SERVING_URI (local folder, gs:// or s3:// prefix), one prefix per version:

    SERVING_URI/v0007/1/saved_model.pb          the graph with both signatures (``signatures``)
    SERVING_URI/v0007/1/variables/              the weights
    SERVING_URI/v0007/1/assets.extra/catsdogs.json   what was exported: model sha256, classes, size

``SERVING_URI/v0007`` is the ``storageUri`` that ``deploy`` applies: KServe's storage initializer
copies that prefix (and only it) to ``/mnt/models``, where TF Serving (``--model_base_path``) and
``catsdogs serve`` find the one numbered child ``1``. A new version is a new prefix, so each
promotion changes the InferenceService spec and KServe rolls out a new revision.

The version ``N`` is ``--version`` when given, else the champion's version when the source is a
champion location (``champion.json``) or one of its ``versions/vNNNN/`` folders, else the version
already holding this model or the next free one. A version is complete only when its
``1/saved_model.pb`` exists: it is written last (locally the whole folder appears by one rename;
on GCS the ``saved_model.pb`` object is uploaded after every other file), and a version without it
is not a version: a rerun finishes it (its objects replaced, strays deleted) rather than calling it
done. Re-exporting the same model to a complete version is a no-op; a version holding another
model is refused. Before anything is published, the saved graph is loaded back and must give the
probabilities of ``catsdogs predict`` (within 1e-4) on the check images.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from catsdogs.components.common import images, model_dir, storage, tempdirs
from catsdogs.components.common.errors import ModelError, OutputConflictError, SettingsError
from catsdogs.components.common.progress import Progress
from catsdogs.components.serve import signatures

SAVED_MODEL_FILE = "saved_model.pb"
RECORD_FILE = "assets.extra/catsdogs.json"
MODEL_VERSION = "1"  # the one numbered child of each version prefix (TF Serving's version folder)
MAX_VERSION = 2**63 - 1  # TF Serving parses version folder numbers as int64
TOLERANCE = 1e-4
_VERSION_DIR = re.compile(r"^v(\d{4,})$")


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What ``export`` wrote (or found already written)."""

    uri: str  # SERVING_URI/<N>
    version: int
    model_sha256: str
    created: bool  # False: this model was already exported under this version
    max_difference: float | None  # largest |export - predict| on the check images (None: no-op)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


def resolve_source(source: str) -> tuple[str, int | None]:
    """The model folder behind ``source`` and its champion version (``model_dir.resolve``)."""
    resolved = model_dir.resolve(source)
    return resolved.folder, resolved.champion_version


def version_name(number: int) -> str:
    """The prefix name of version ``number``: ``v0007``."""
    return f"v{number:04d}"


def version_uri(serving_uri: str, number: int) -> str:
    """``SERVING_URI/vNNNN``: the storageUri of one version."""
    return storage.join(serving_uri, version_name(number))


def parse_version_name(name: str) -> int | None:
    """The number of a version prefix name (exactly as ``version_name`` writes it), else None."""
    match = _VERSION_DIR.match(name)
    if match is None or version_name(int(match.group(1))) != name:
        return None
    return int(match.group(1))


@dataclasses.dataclass(frozen=True)
class Versions:
    """The version prefixes under a SERVING_URI."""

    complete: dict[int, str | None]  # number -> the model sha256 its record names
    incomplete: dict[int, str | None]  # prefixes without 1/saved_model.pb: not versions


def existing_versions(serving_uri: str) -> Versions:
    """Each version prefix under ``serving_uri``: complete (with its model sha256) or not."""
    if not str(serving_uri).strip() or not storage.is_dir(serving_uri):
        return Versions({}, {})
    names = set(storage.list_files(serving_uri))
    numbers = {n for name in names if (n := parse_version_name(name.split("/")[0])) is not None}
    found: tuple[dict[int, str | None], dict[int, str | None]] = ({}, {})
    for number in sorted(numbers):
        child = f"{version_name(number)}/{MODEL_VERSION}"
        sha256: str | None = None
        if f"{child}/{RECORD_FILE}" in names:
            try:
                text = storage.read_text(storage.join(serving_uri, child, RECORD_FILE))
                sha256 = json.loads(text).get("model_sha256")
            except (FileNotFoundError, json.JSONDecodeError, AttributeError):
                sha256 = None
        found[f"{child}/{SAVED_MODEL_FILE}" not in names][number] = sha256
    return Versions(*found)


def deployable_version(serving_uri: str, version: int | None = None) -> str:
    """The storageUri to deploy: ``serving_uri`` when it is a version prefix, else one version.

    ``version`` names it; without it, the newest complete version under ``serving_uri``.

    Raises:
        ModelError: No complete version there.
    """
    uri = str(serving_uri).rstrip("/")
    if parse_version_name(uri.rsplit("/", 1)[-1]) is not None:
        return uri
    if version is not None:
        return version_uri(uri, check_version(version))
    found = existing_versions(uri)
    if not found.complete:
        raise ModelError(
            f"{uri} holds no complete exported version (a vNNNN/1/{SAVED_MODEL_FILE}); run "
            "catsdogs export first, or pass --version N or SERVING_URI/vNNNN."
        )
    return version_uri(uri, max(found.complete))


def check_version(number: int) -> int:
    """``number`` when it is a usable version (1 to 2^63-1: TF Serving reads int64), else refuse."""
    if isinstance(number, bool) or not 1 <= number <= MAX_VERSION:
        raise SettingsError(
            f"--version must be between 1 and {MAX_VERSION} (TF Serving reads versions as int64), "
            f"got {number}. Leave it out to use the champion's version or the next free one."
        )
    return number


def choose_version(serving_uri: str, sha256: str, requested: int | None, found: Versions) -> int:
    """The version to export to (see the module docstring); refuses one holding another model."""
    existing = found.complete
    if requested is None:
        same = [number for number, digest in existing.items() if digest == sha256]
        unfinished = [number for number, digest in found.incomplete.items() if digest == sha256]
        if same or unfinished:
            return (same or unfinished)[-1]
        return check_version(max([*existing, *found.incomplete], default=0) + 1)
    check_version(requested)
    if requested in existing and existing[requested] != sha256:
        held = existing[requested] or "a model this tool did not export"
        raise OutputConflictError(
            f"{version_uri(serving_uri, requested)} already holds {held}, not this model "
            f"(sha256 {sha256}). Export it as a new version (--version "
            f"{max([*existing, *found.incomplete]) + 1}) or to another --output; versions are "
            "never overwritten."
        )
    return requested


def file_sha256(path: Path) -> str:
    """The hex sha256 of a local file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_images() -> dict[str, bytes]:
    """Deterministic check images: JPEGs (plain, grey, EXIF-rotated) and PNGs (RGB, RGBA)."""
    from PIL import Image

    rng = np.random.default_rng(1337)
    base = rng.integers(0, 256, (61, 83, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(base).resize((331, 245), Image.Resampling.BICUBIC))
    rotated = Image.Exif()
    rotated[0x0112] = 6

    def encoded(image: Any, fmt: str, **options: Any) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **options)
        return buffer.getvalue()

    return {
        "plain.jpg": encoded(Image.fromarray(smooth), "JPEG", quality=90),
        "grey.jpg": encoded(Image.fromarray(smooth[..., 0]), "JPEG"),
        "exif-rotated.jpg": encoded(Image.fromarray(smooth), "JPEG", exif=rotated),
        "rgb.png": encoded(Image.fromarray(base), "PNG"),
        "rgba.png": encoded(Image.fromarray(np.dstack([smooth, smooth[..., 1]])), "PNG"),
    }


def check_export(
    saved_dir: Path,
    model_uri: str,
    classes: tuple[str, ...],
    size: tuple[int, int],
    extra: list[str] | None = None,
) -> float:
    """Largest |export - predict| over the check images (and ``extra`` image files).

    Both signatures are checked: ``serving_default`` on the encoded bytes and ``serving_pixels``
    on the pixels ``catsdogs predict`` feeds the model.

    Raises:
        ModelError: A difference above ``TOLERANCE``.
    """
    import tensorflow as tf
    from catsdogs.components.predict import core as predict

    signatures.quiet_optimizer()
    loaded = tf.saved_model.load(str(saved_dir))
    by_bytes = loaded.signatures[signatures.DEFAULT_SIGNATURE]
    by_pixels = loaded.signatures[signatures.PIXELS_SIGNATURE]
    output = signatures.probability_output(classes)
    with tempdirs.temporary("check") as tmp:
        files = []
        for name, data in check_images().items():
            Path(tmp, name).write_bytes(data)
            files.append(str(Path(tmp, name)))
        files += [source.uri for source in images.expand(extra or []) if source.error is None]
        expected = {p.image: p.positive for p in predict.predict(model_uri, files)}
        worst, worst_file = 0.0, ""
        for uri in files:
            if expected.get(uri) is None:
                raise ModelError(f"catsdogs predict could not read check image {uri}.")
            data = storage.read_bytes(uri)
            pixels = images.resize(images.decode(data, uri), size).astype(np.float32)
            for got in (
                by_bytes(**{signatures.BYTES_INPUT: tf.constant([data])})[output],
                by_pixels(**{signatures.PIXELS_INPUT: tf.constant(pixels[None])})[output],
            ):
                difference = abs(float(got.numpy()[0]) - float(expected[uri]))
                if difference > worst:
                    worst, worst_file = difference, uri
    if worst > TOLERANCE:
        raise ModelError(
            f"The exported SavedModel gives P({classes[1]}) {worst:.2e} away from "
            f"`catsdogs predict` on {Path(worst_file).name} (allowed {TOLERANCE}). The model's "
            "layers do not survive tf.saved_model.save; report it with the model file."
        )
    return worst


# What an export does, in order (its progress counts them).
EXPORT_STEPS = ("save the SavedModel", "check it against catsdogs predict", "publish it")


def export(
    source: str,
    serving_uri: str,
    version: int | None = None,
    check_files: list[str] | None = None,
) -> ExportResult:
    """Export the model behind ``source`` to ``serving_uri/<N>/`` (see the module docstring).

    Args:
        source: A model folder, a champion location or a champion ``versions/vNNNN/`` folder.
        serving_uri: Where the numbered version folders live (local, gs:// or s3://).
        version: The version number; default: the champion's, else see the module docstring.
        check_files: Image files or folders checked against ``catsdogs predict`` on top of the
            built-in check images.

    Raises:
        ModelError: Not a usable model, or an export that does not match ``catsdogs predict``.
        OutputConflictError: The version already holds another model.
    """
    import tensorflow as tf

    if version is not None:
        check_version(version)
    resolved = model_dir.resolve(source)
    model_uri = resolved.folder
    with model_dir.local_model_file(model_uri) as model_file:
        sha256 = file_sha256(model_file)
        found = existing_versions(serving_uri)
        requested = version if version is not None else resolved.champion_version
        number = choose_version(serving_uri, sha256, requested, found)
        target = version_uri(serving_uri, number)
        if found.complete.get(number) == sha256:
            return ExportResult(target, number, sha256, False, None)
        model = model_dir.load_model_file(model_file, model_uri)
    size = model_dir.image_size(model)
    if size is None:
        raise ModelError(
            f"The model in {model_uri} accepts any image size; serving needs a fixed one. "
            "Train it with --image-size."
        )
    classes = model_dir.model_classes(model_uri)
    with (
        tempdirs.temporary("export") as tmp,
        Progress(f"Exporting version {number}", len(EXPORT_STEPS), "steps", interval=0) as bar,
    ):
        saved_dir = Path(tmp, version_name(number), MODEL_VERSION)
        module, serving = signatures.build(model, size, classes)
        tf.saved_model.save(module, str(saved_dir), signatures=serving)
        bar.update()  # saved
        worst = check_export(saved_dir, model_uri, classes, size, check_files)
        bar.update()  # checked against catsdogs predict
        record = {
            "model_sha256": sha256,
            "source": str(model_uri),
            "classes": list(classes),
            "image_size": list(size),
            "signatures": [signatures.DEFAULT_SIGNATURE, signatures.PIXELS_SIGNATURE],
            "max_difference_vs_predict": worst,
        }
        Path(saved_dir, RECORD_FILE).parent.mkdir(parents=True, exist_ok=True)
        Path(saved_dir, RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
        publish(saved_dir.parent, target, replace=number in found.incomplete)
        bar.update()  # published
    return ExportResult(target, number, sha256, True, worst)


def publish(version_dir: Path, target: str, replace: bool = False) -> None:
    """Put a finished version folder (``1/`` inside) at ``target``, ``saved_model.pb`` last.

    Args:
        version_dir: The local ``vNNNN`` folder.
        target: ``SERVING_URI/vNNNN``.
        replace: ``target`` holds an incomplete version (no ``saved_model.pb``): replace it.

    Raises:
        OutputConflictError: Something appeared at ``target`` meanwhile.
    """
    graph = f"{MODEL_VERSION}/{SAVED_MODEL_FILE}"
    if not storage.is_remote(target):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        # A staging copy beside the target, locked while it is written: the next export there
        # removes one whose export was killed (tempdirs).
        with tempdirs.temporary("export", root=Path(target).parent) as staging:
            storage.upload_dir(version_dir, str(staging))
            if replace and not Path(target, graph).exists():
                shutil.rmtree(target, ignore_errors=True)  # not a version: no saved_model.pb
            try:
                os.rename(staging, target)  # atomic; fails if target exists and is not empty
            except OSError as error:
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                raise OutputConflictError(
                    f"{target} appeared while exporting; run the export again."
                ) from error
        return
    names = storage.list_files(version_dir)
    if replace:  # finish it: strays deleted, every file rewritten, the graph still last
        for stray in set(storage.list_files(target)) - set(names):
            storage.delete(storage.join(target, stray))
    try:
        for name in [n for n in names if n != graph]:
            storage.upload_file(
                version_dir / name, storage.join(target, name), if_absent=not replace
            )
        storage.upload_file(version_dir / graph, storage.join(target, graph), if_absent=True)
    except storage.AlreadyExistsError as error:
        raise OutputConflictError(
            f"{target} appeared while exporting; run the export again."
        ) from error
