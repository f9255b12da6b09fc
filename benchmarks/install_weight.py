"""What each optional part adds to a training install: packages and bytes, from this venv.

Walks every installed distribution's ``Requires-Dist`` (no extras) from the runtime dependencies
and sums the files of its ``RECORD``; prints, for kserve, docker and scipy, the packages and MB
they add on top. Usage: ``.venv/bin/python benchmarks/install_weight.py`` (docs/development.md).
"""

from __future__ import annotations

import importlib.metadata as metadata
import os

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

DISTS = {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions()}
TRAINING = [
    "tensorflow", "keras", "kfp", "kfp-kubernetes", "google-cloud-storage", "google-crc32c",
    "typer", "numpy", "pillow", "matplotlib", "tqdm", "requests", "kubernetes", "pyyaml",
    "boto3", "simplejpeg",
]  # fmt: skip


def closure(roots: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = [canonicalize_name(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen or name not in DISTS:
            continue
        seen.add(name)
        for line in DISTS[name].requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(requirement.name))
    return seen


def megabytes(names: set[str]) -> float:
    total = 0
    for name in names:
        for file in DISTS[name].files or []:
            path = DISTS[name].locate_file(file)
            if os.path.isfile(path):
                total += os.path.getsize(path)
    return total / 1e6


def main() -> None:
    base = closure(TRAINING)
    print(f"training install: {len(base)} packages, {megabytes(base):,.0f} MB")
    for extra in ("kserve", "docker", "scipy"):
        added = closure([*TRAINING, extra]) - base
        print(
            f"+ {extra}: {len(added)} packages, {megabytes(added):,.1f} MB ({', '.join(sorted(added))})"
        )


if __name__ == "__main__":
    main()
