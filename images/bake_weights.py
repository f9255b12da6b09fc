"""Bake the ImageNet "notop" weights of the default backbones into the image's Keras cache.

Runs at image build time (``images/Dockerfile``), so that training in the image needs no internet.
For each backbone, a file staged under ``--staged`` with Keras's own file name wins (``make images
WEIGHTS_DIR=...`` and ``make image-test`` stage ``../shared/weights``); otherwise Keras downloads the
file from its public origin into ``$KERAS_HOME/models`` and checks its hash. Every file is loaded
into its model once, so a broken file fails the build rather than a run.

Staged files may be converted copies with the published values but another hash, which Keras's
``weights="imagenet"`` would reject and try to download again. ``weights.json`` in the target folder
records, per backbone, the file name, its sha256 and where it came from; trainers should pass
``$CATSDOGS_WEIGHTS_DIR/<file>`` as the weights path when it exists.

Usage: ``python bake_weights.py --staged DIR --into DIR [--backbone NAME ...]``
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import sys
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A keras.applications model and the file name Keras caches its notop weights under."""

    application: str
    file_name: str
    required: bool


BACKBONES: dict[str, Backbone] = {
    "vgg16": Backbone("VGG16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", True),
    "mobilenet_v2": Backbone(
        "MobileNetV2", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5", True
    ),
    # Optional: baked when it can be downloaded (94 MB), skipped with a note otherwise.
    "resnet50": Backbone("ResNet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", False),
}


def sha256(path: Path) -> str:
    """The hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bake(name: str, staged: Path, into: Path) -> dict[str, str] | None:
    """Put one backbone's weights into ``into`` and check that they load.

    Args:
        name: A key of ``BACKBONES``.
        staged: Folder that may hold the file under Keras's name.
        into: The Keras cache's ``models`` folder.

    Returns:
        The weights.json entry, or None when an optional backbone could not be fetched.

    Raises:
        RuntimeError: A required backbone has no staged file and could not be downloaded.
    """
    import keras

    backbone = BACKBONES[name]
    application = getattr(keras.applications, backbone.application)
    target = into / backbone.file_name
    source = staged / backbone.file_name
    if source.is_file():
        shutil.copyfile(source, target)
        application(include_top=False, weights=str(target))
        origin = f"staged:{source.name}"
    else:
        try:
            application(include_top=False, weights="imagenet")  # downloads, checks the hash
        except Exception as error:  # network errors come in many types
            if backbone.required:
                raise RuntimeError(
                    f"No weights for {name}: {source} is missing and the download failed ({error}). "
                    f"Stage the file: make images WEIGHTS_DIR=<folder with {backbone.file_name}>."
                ) from error
            print(f"skipped optional backbone {name}: download failed ({error})")
            return None
        if not target.is_file():
            raise RuntimeError(
                f"Keras cached {backbone.file_name} outside {into}: set KERAS_HOME to its parent."
            )
        origin = "keras download (hash checked)"
    print(f"baked {name}: {target} ({target.stat().st_size} bytes, {origin})")
    return {"file": backbone.file_name, "sha256": sha256(target), "source": origin}


def main(argv: list[str] | None = None) -> int:
    """Bake the requested backbones and write weights.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--staged", type=Path, required=True, help="folder of staged .h5 files")
    parser.add_argument("--into", type=Path, required=True, help="the Keras cache's models folder")
    parser.add_argument("--backbone", action="append", choices=sorted(BACKBONES), default=None)
    args = parser.parse_args(argv)
    args.into.mkdir(parents=True, exist_ok=True)
    baked = {}
    for name in args.backbone or list(BACKBONES):
        entry = bake(name, args.staged, args.into)
        if entry is not None:
            baked[name] = entry
    (args.into / "weights.json").write_text(json.dumps(baked, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
