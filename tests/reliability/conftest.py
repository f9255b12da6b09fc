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
