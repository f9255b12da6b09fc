"""Fixtures of the reliability tier (each helper appends its own, below)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def promotable(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A tiny dataset and three model folders with matching evaluations, without TensorFlow.

    Each "model" is a few random bytes in model.keras (promotion only copies and hashes it); its
    evaluation.json carries that sha256, the dataset's test-split identity and an accuracy:
    first 0.6, better 0.8, worse 0.7. Returns ``{"data": uri, NAME: (model_dir, eval_dir)}``.
    """
    import os

    from catsdogs.components.common import records

    from tests.conftest import make_tiny_dataset

    root = tmp_path_factory.mktemp("promotable")
    data = make_tiny_dataset(root / "data", per_class=2, size=16)
    split_id = records.load_manifest(data).identity(("test",))
    found: dict[str, object] = {"data": data}
    for name, accuracy in (("first", 0.6), ("better", 0.8), ("worse", 0.7)):
        model, evaluation = root / name, root / f"{name}-eval"
        model.mkdir()
        evaluation.mkdir()
        payload = os.urandom(2048)
        (model / "model.keras").write_bytes(payload)
        record = {
            "accuracy": accuracy,
            "model": str(model),
            "model_sha256": hashlib.sha256(payload).hexdigest(),
            "test_split_sha256": split_id,
        }
        (evaluation / "evaluation.json").write_text(json.dumps(record))
        found[name] = (str(model), str(evaluation))
    return found


def champion_is_valid(location: str) -> dict | None:
    """Assert champion.json (if any) points at a complete version; return its record."""
    from catsdogs.components.common import storage

    pointer = storage.join(location, "champion.json")
    if not storage.exists(pointer):
        return None
    record = json.loads(storage.read_text(pointer))
    folder = storage.join(location, record["path"])
    model = storage.read_bytes(storage.join(folder, "model.keras"))
    assert hashlib.sha256(model).hexdigest() == record["model_sha256"], record
    evaluation = json.loads(storage.read_text(storage.join(folder, "evaluation.json")))
    assert evaluation["model_sha256"] == record["model_sha256"], record
    assert Path(record["path"]).name == f"v{record['version']:04d}", record
    return dict(record)


# ---------------------------------------------------------------- reliab: disks that misbehave


def _mount_tmpfs(folder: Path, options: str) -> bool:
    """Mount a tmpfs at ``folder`` (root only); whether it worked."""
    import os
    import subprocess

    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    return done.returncode == 0


def _unmount(folder: Path) -> None:
    import subprocess

    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def read_only_dir(tmp_path: Path):
    """An empty folder nothing can be written into: a read-only tmpfs (root), else mode 0555."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    mounted = _mount_tmpfs(folder, "ro,size=64k")
    if not mounted:
        folder.chmod(0o555)
    try:
        yield folder
    finally:
        if mounted:
            _unmount(folder)
        else:
            folder.chmod(0o755)


@pytest.fixture
def full_disk(tmp_path: Path):
    """A factory: ``full_disk(kib)`` -> a folder on a tmpfs of that size (needs root to mount)."""
    mounts: list[Path] = []

    def make(kib: int) -> Path:
        folder = tmp_path / f"disk-{len(mounts)}"
        folder.mkdir()
        if not _mount_tmpfs(folder, f"size={kib}k"):
            pytest.skip("a small disk needs a tmpfs mount, which needs root here")
        mounts.append(folder)
        return folder

    try:
        yield make
    finally:
        for folder in mounts:
            _unmount(folder)
