"""Compile the pipeline to a YAML file, refusing images that are not pinned."""

from __future__ import annotations

import re
from pathlib import Path

from catsdogs.components.common.errors import SettingsError
from catsdogs.pipelines.options import PipelineOptions
from catsdogs.pipelines.pipeline import build_pipeline

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def check_image(reference: str) -> str:
    """Accept an image pinned to a version tag or a digest; refuse ``:latest`` and untagged ones.

    Args:
        reference: An image reference such as ``ghcr.io/org/catsdogs-gpu:0.1.0``.

    Returns:
        The reference, unchanged.

    Raises:
        SettingsError: The reference has no tag or digest, or its tag is ``latest``.
    """
    if "@" in reference:
        if _DIGEST.search(reference):
            return reference
        raise SettingsError(
            f"The component image {reference!r} has a malformed digest: expected "
            "@sha256:<64 lowercase hex>; set CATSDOGS_IMAGE to a pinned reference (or build one: "
            "make images REGISTRY=... TAG=...)."
        )
    last = reference.rsplit("/", 1)[-1]
    tag = last.partition(":")[2] if ":" in last else ""
    if not tag or tag == "latest":
        raise SettingsError(
            f"The component image {reference!r} is not pinned: expected a version tag or digest "
            "(e.g. registry/catsdogs-gpu:0.1.0 or ...@sha256:<64 hex>); set CATSDOGS_IMAGE "
            "to a pinned reference (or build one: make images REGISTRY=... TAG=...)."
        )
    return reference


def compile_pipeline(output: str | Path, options: PipelineOptions | None = None) -> Path:
    """Compile the pipeline to ``output`` (YAML) after checking the image is pinned.

    Args:
        output: Where to write the compiled pipeline (parent folders are created).
        options: Compile-time resources and placement; the defaults request one GPU per GPU task.

    Returns:
        The path written.
    """
    import yaml
    from catsdogs.components.common import config
    from kfp import compiler

    check_image(config.image())
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix or '.yaml'}")
    try:
        compiler.Compiler().compile(build_pipeline(options), package_path=str(partial))
        spec = next(yaml.safe_load_all(partial.read_text()))
        for executor in spec["deploymentSpec"]["executors"].values():
            check_image(executor["container"]["image"])
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path
