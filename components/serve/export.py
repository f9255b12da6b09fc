"""Export a model folder (or the champion) as a TensorFlow SavedModel that TF Serving and KServe load.

Layout written under SERVING_URI (local folder, gs:// or s3:// prefix), the TF Serving / KServe one:

    SERVING_URI/<N>/saved_model.pb        the graph with both signatures (see ``signatures``)
    SERVING_URI/<N>/variables/            the weights
    SERVING_URI/<N>/assets.extra/catsdogs.json   what was exported: model sha256, classes, size

The version ``N`` is ``--version`` when given, else the champion's version when the source is a
champion location (``champion.json``) or one of its ``versions/vNNNN/`` folders, else the version
already holding this model or the next free one. Re-exporting the same model to the same version
is a no-op; a version holding another model is refused. Before anything is published, the saved
graph is loaded back and must give the probabilities of ``catsdogs predict`` (within 1e-4) on a
few check images; a version folder appears only complete (locally a rename, on GCS the
``saved_model.pb`` object is written last).
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from catsdogs.components.common import images, model_dir, storage, tempdirs
from catsdogs.components.common.errors import ModelError, OutputConflictError, SettingsError
from catsdogs.components.common.progress import Progress
from catsdogs.components.serve import signatures

SAVED_MODEL_FILE = "saved_model.pb"
RECORD_FILE = "assets.extra/catsdogs.json"
TOLERANCE = 1e-4
_VERSION_DIR = re.compile(r"^v(\d+)$")


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
    """The model folder behind ``source`` and the champion version it carries, if any.

    Args:
        source: A model folder (model.keras), a champion location (champion.json) or one of its
            ``versions/vNNNN/`` folders.
    """
    from catsdogs.components.promote import champion

    record = champion.read_pointer(source).record
    if record is not None:
        return storage.join(source, str(record["path"])), int(record["version"])
    parts = str(source).rstrip("/").split("/")
    match = _VERSION_DIR.match(parts[-1])
    if match and len(parts) > 1 and parts[-2] == "versions":
        return source, int(match.group(1))
    return source, None


def existing_versions(serving_uri: str) -> dict[int, str | None]:
    """Each numbered version under ``serving_uri`` and the model sha256 its record names."""
    if not storage.is_dir(serving_uri):
        return {}
    tops = {name.split("/")[0] for name in storage.list_files(serving_uri)}
    numbers = sorted(int(top) for top in tops if top.isdigit())
    found: dict[int, str | None] = {}
    for number in numbers:
        record_uri = storage.join(serving_uri, str(number), RECORD_FILE)
        try:
            found[number] = json.loads(storage.read_text(record_uri)).get("model_sha256")
        except (FileNotFoundError, json.JSONDecodeError, AttributeError):
            found[number] = None
    return found


def choose_version(
    serving_uri: str, sha256: str, requested: int | None, existing: dict[int, str | None]
) -> int:
    """The version to export to (see the module docstring); refuses one holding another model."""
    if requested is None:
        same = [number for number, digest in existing.items() if digest == sha256]
        return same[-1] if same else max(existing, default=0) + 1
    if requested < 1:
        raise SettingsError(f"--version must be at least 1, got {requested}.")
    if requested in existing and existing[requested] != sha256:
        held = existing[requested] or "a model this tool did not export"
        raise OutputConflictError(
            f"{storage.join(serving_uri, str(requested))} already holds {held}, not this model "
            f"(sha256 {sha256}). Export it as a new version (--version "
            f"{max(existing) + 1}) or to another --output; versions are never overwritten."
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

    model_uri, champion_version = resolve_source(source)
    with model_dir.local_model_file(model_uri) as model_file:
        sha256 = file_sha256(model_file)
        existing = existing_versions(serving_uri)
        number = choose_version(
            serving_uri, sha256, version if version is not None else champion_version, existing
        )
        target = storage.join(serving_uri, str(number))
        if existing.get(number) == sha256:
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
        saved_dir = Path(tmp, str(number))
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
        publish(saved_dir, target)
        bar.update()  # published
    return ExportResult(target, number, sha256, True, worst)


def publish(saved_dir: Path, target: str) -> None:
    """Put a finished SavedModel folder at ``target`` so that it only ever appears complete.

    Raises:
        OutputConflictError: Something appeared at ``target`` meanwhile.
    """
    if not storage.is_remote(target):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        # A staging copy beside the target, locked while it is written: the next export there
        # removes one whose export was killed (tempdirs).
        with tempdirs.temporary("export", root=Path(target).parent) as staging:
            storage.upload_dir(saved_dir, str(staging))
            try:
                os.rename(staging, target)  # atomic; fails if target exists and is not empty
            except OSError as error:
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                raise OutputConflictError(
                    f"{target} appeared while exporting; run the export again."
                ) from error
        return
    names = storage.list_files(saved_dir)
    try:
        for name in [n for n in names if n != SAVED_MODEL_FILE] + [SAVED_MODEL_FILE]:
            storage.upload_file(saved_dir / name, storage.join(target, name), if_absent=True)
    except storage.AlreadyExistsError as error:
        raise OutputConflictError(
            f"{target} appeared while exporting; run the export again."
        ) from error
