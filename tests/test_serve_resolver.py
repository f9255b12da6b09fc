"""One model resolver: --model takes a model folder, a champion location or a champion version,
local or gs://, in predict, evaluate, render, export and serve (``model_dir.resolve``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catsdogs.cli.app import app
from catsdogs.components.common import model_dir, storage
from catsdogs.components.common.errors import CatsdogsError
from typer.testing import CliRunner

from tests.conftest import make_tiny_dataset
from tests.tiny_models import flat_model, save_model_dir, write_jpeg

runner = CliRunner()


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("champion")
    for version in (1, 3):
        save_model_dir(flat_model(size=32, seed=version), root / "versions" / f"v{version:04d}")
    (root / "champion.json").write_text(json.dumps({"version": 3, "path": "versions/v0003"}))
    return root


def test_resolve_reads_each_form(champion: Path) -> None:
    assert model_dir.resolve(str(champion)) == model_dir.ResolvedModel(
        str(champion / "versions" / "v0003"), 3
    )
    version = str(champion / "versions" / "v0001")
    assert model_dir.resolve(version) == model_dir.ResolvedModel(version, 1)
    plain = model_dir.resolve(version + "/")
    assert plain.champion_version == 1


@pytest.mark.parametrize("path", ["../../../../etc", "versions/v0003/..", "/abs", "versions/v3x"])
def test_resolve_refuses_a_pointer_outside_versions(tmp_path: Path, path: str) -> None:
    (tmp_path / "champion.json").write_text(json.dumps({"version": 3, "path": path}))
    with pytest.raises(CatsdogsError, match="must name exactly versions/v0003"):
        model_dir.resolve(str(tmp_path))


def test_predict_takes_the_champion_location_and_a_version(champion: Path, tmp_path: Path) -> None:
    photo = str(write_jpeg(tmp_path / "photo.jpg"))
    answers = {}
    for model in (champion, champion / "versions" / "v0003", champion / "versions" / "v0001"):
        result = runner.invoke(app, ["predict", "--model", str(model), "--jsonl", photo])
        assert result.exit_code == 0, result.output
        answers[model.name] = json.loads(result.stdout)["p_dog"]
    assert answers[champion.name] == answers["v0003"] != answers["v0001"]


def test_evaluate_takes_the_champion_location(champion: Path, tmp_path: Path) -> None:
    data = make_tiny_dataset(tmp_path / "data", per_class=2, size=32)
    result = runner.invoke(
        app, ["evaluate", "--model", str(champion), "--data", data, "--output", str(tmp_path / "e")]
    )
    assert result.exit_code == 0, result.output
    evaluation = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    expected = (champion / "versions" / "v0003" / "model.keras").read_bytes()
    import hashlib

    assert evaluation["model_sha256"] == hashlib.sha256(expected).hexdigest()


@pytest.mark.gcs
def test_predict_takes_a_gcs_champion(champion: Path, bucket: str, tmp_path: Path) -> None:
    storage.upload_dir(champion, f"{bucket}/champion")
    photo = str(write_jpeg(tmp_path / "photo.jpg"))
    result = runner.invoke(app, ["predict", "--model", f"{bucket}/champion", "--jsonl", photo])
    assert result.exit_code == 0, result.output
    local = runner.invoke(app, ["predict", "--model", str(champion), "--jsonl", photo])
    assert json.loads(result.stdout)["p_dog"] == json.loads(local.stdout)["p_dog"]
