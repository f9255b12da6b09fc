"""Compile the pipeline to a YAML file, refusing images that are not pinned (by digest, for a cluster)."""

from __future__ import annotations

import re
from pathlib import Path

from catsdogs.components.common.errors import SettingsError
from catsdogs.pipelines.options import PipelineOptions
from catsdogs.pipelines.pipeline import build_pipeline

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
# Where `make images` records the pushed image@sha256 reference.
IMAGE_RECORD = "build/image.ref"


def check_image(reference: str, require_digest: bool = False) -> str:
    """Accept an image pinned to a digest (or, unless ``require_digest``, to a version tag).

    A cluster run wants the digest: KFP's cache key holds the image string, and a node that has a
    tag does not pull it again (no pull policy is set, and Kubernetes' default for a tag other
    than ``latest`` is IfNotPresent), so an image rebuilt under the same tag would keep serving
    cached results and old code.

    Args:
        reference: An image reference such as ``ghcr.io/org/catsdogs-gpu:0.1.0@sha256:<hex>``.
        require_digest: Refuse a reference without ``@sha256:``.

    Returns:
        The reference, unchanged.

    Raises:
        SettingsError: No tag or digest, a ``latest`` tag, a malformed digest, or (with
            ``require_digest``) a tag alone.
    """
    if "@" in reference:
        if _DIGEST.search(reference):
            return reference
        raise SettingsError(
            f"The component image {reference!r} has a malformed digest: expected "
            "@sha256:<64 lowercase hex>; set CATSDOGS_IMAGE to the reference `make images` "
            f"records in {IMAGE_RECORD}."
        )
    last = reference.rsplit("/", 1)[-1]
    tag = last.partition(":")[2] if ":" in last else ""
    if not tag or tag == "latest":
        raise SettingsError(
            f"The component image {reference!r} is not pinned: expected a digest (or a version "
            "tag), e.g. registry/catsdogs-gpu:0.1.0@sha256:<64 hex>; set CATSDOGS_IMAGE to the "
            f"reference `make images` records in {IMAGE_RECORD}."
        )
    if require_digest:
        raise SettingsError(
            f"The component image {reference!r} is a tag, not a digest: the cluster caches results "
            "by the image string and does not pull a tag it has again, so a rebuilt image under "
            f"this tag would go unseen. Set CATSDOGS_IMAGE to the image@sha256:... that `make "
            f"images` records in {IMAGE_RECORD} (export CATSDOGS_IMAGE=$(cat {IMAGE_RECORD})), or "
            "pass --allow-tag."
        )
    return reference


def tag_warning(reference: str) -> str | None:
    """The loud warning for a cluster run allowed to use a tag, or None for a digest."""
    if _DIGEST.search(reference):
        return None
    return (
        f"WARNING: the component image {reference} is a tag, not a digest (--allow-tag): KFP "
        "caches results by the image string and nodes that have this tag do not pull it again, "
        "so an image rebuilt under the same tag is invisible to the cluster."
    )


def package_images(package: str | Path) -> set[str]:
    """The images a compiled pipeline runs (its executors' containers)."""
    import yaml

    spec = next(yaml.safe_load_all(Path(package).read_text()))
    return {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}


def compile_pipeline(
    output: str | Path, options: PipelineOptions | None = None, require_digest: bool = False
) -> Path:
    """Compile the pipeline to ``output`` (YAML) after checking the image is pinned.

    Args:
        output: Where to write the compiled pipeline (parent folders are created).
        options: Compile-time resources and placement; the defaults request one GPU per GPU task.
        require_digest: Refuse an image pinned by tag alone (the CLI's default for a cluster).

    Returns:
        The path written.
    """
    import yaml
    from catsdogs.components.common import config
    from kfp import compiler

    check_image(config.image(), require_digest)
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.stem}.partial{path.suffix or '.yaml'}")
    try:
        compiler.Compiler().compile(build_pipeline(options), package_path=str(partial))
        spec = next(yaml.safe_load_all(partial.read_text()))
        for executor in spec["deploymentSpec"]["executors"].values():
            check_image(executor["container"]["image"], require_digest)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path
