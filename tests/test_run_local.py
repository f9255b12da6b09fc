"""The whole pipeline under kfp.local (SubprocessRunner, no venv) on a tiny synthetic source."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from catsdogs.cli.app import app
from PIL import Image
from typer.testing import CliRunner


def write_source(folder: Path, per_class: int = 6, size: int = 48) -> Path:
    """Kaggle-style flat folder of cat.<id>.jpg / dog.<id>.jpg synthetic photos."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True)
    for label, name in enumerate(("cat", "dog")):
        for index in range(per_class):
            pixels = rng.normal(70 + 110 * label, 30, (size, size, 3)).clip(0, 255)
            Image.fromarray(pixels.astype("uint8")).save(folder / f"{name}.{index}.jpg")
    return folder


def files(task_dir: Path) -> set[str]:
    return {str(p.relative_to(task_dir)) for p in task_dir.rglob("*") if p.is_file()}


@pytest.mark.slow
@pytest.mark.gcs
def test_whole_pipeline_runs_locally_and_writes_every_artifact(tmp_path: Path, bucket: str) -> None:
    """gs:// source on the real fake-gcs-server; artifacts and champion on the local disk."""
    from catsdogs.components.common import storage

    source = f"{bucket}/raw"
    storage.upload_dir(write_source(tmp_path / "raw"), source)
    champion = tmp_path / "champion"
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--source",
            source,
            "--output",
            str(tmp_path / "out"),
            "--train-per-class",
            "2",
            "--val-per-class",
            "2",
            "--test-per-class",
            "2",
            "--scratch-epochs",
            "1",
            "--transfer-epochs",
            "1",
            "--batch-size",
            "4",
            "--weights",
            "none",
            "--champion-uri",
            str(champion),
            "--checkpoint-root",
            str(tmp_path / "checkpoints"),
        ],
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in (tmp_path / "out" / "kfp").iterdir() if p.is_dir()]
    tasks = {p.name for p in run_dir.iterdir() if p.is_dir()}
    assert {
        "fingerprint-source",
        "prepare-dataset",
        "train-scratch",
        "train-transfer",
        "evaluate",
        "evaluate-2",
        "pick-better",
    } <= tasks
    manifest = json.loads((run_dir / "prepare-dataset" / "dataset" / "manifest.json").read_text())
    assert {s: manifest["splits"][s]["count"] for s in ("train", "val", "test")} == {
        "train": 4,
        "val": 4,
        "test": 4,
    }
    fingerprint = json.loads((run_dir / "fingerprint-source" / "executor_output.json").read_text())[
        "parameterValues"
    ]["Output"]
    assert manifest["source_fingerprint"] == fingerprint
    for trainer in ("train-scratch", "train-transfer"):
        written = files(run_dir / trainer)
        assert {
            "model/model.keras",
            "model/history.json",
            "model/metrics.json",
            "model/run.json",
        } <= written, (trainer, written)
        assert "curves" in written
    assert any(name.startswith("features/") for name in files(run_dir / "train-transfer"))
    for evaluation in ("evaluate", "evaluate-2"):
        metrics = json.loads((run_dir / evaluation / "evaluation" / "evaluation.json").read_text())
        assert 0.0 <= metrics["accuracy"] <= 1.0
        assert "report" in files(run_dir / evaluation)
    better = json.loads((run_dir / "pick-better" / "executor_output.json").read_text())
    choice = better["parameterValues"]["Output"]
    assert choice in ("scratch", "transfer")
    render = "render-activations" if choice == "scratch" else "render-activations-2"
    promote = "promote" if choice == "scratch" else "promote-2"
    assert (run_dir / render / "report").stat().st_size > 1000
    assert tasks >= {render, promote}
    pointer = json.loads((champion / "champion.json").read_text())
    assert (champion / pointer["path"] / "model.keras").is_file()
    assert f"Artifacts under {run_dir}" in result.output
    dirs = json.loads((run_dir / "checkpoint-dirs" / "executor_output.json").read_text())
    scratch_dir = dirs["parameterValues"]["scratch"]
    assert scratch_dir.startswith(str(tmp_path / "checkpoints") + "/")
    assert scratch_dir.endswith("/scratch")
    assert "{{" not in scratch_dir  # the run-id placeholder was filled in
    recorded = json.loads((run_dir / "run.json").read_text())
    assert recorded["parameters"]["champion_uri"] == str(champion)


def test_run_rejects_bad_parameters_before_running(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["run", "--source", str(tmp_path), "--output", str(tmp_path), "--scratch-epochs", "0"]
    )
    assert result.exit_code == 2
    assert "scratch_epochs must be at least 1, got 0" in result.output
    assert not (tmp_path / "kfp").exists()
    missing = CliRunner().invoke(
        app, ["run", "--source", str(tmp_path / "nope"), "--output", str(tmp_path)]
    )
    assert missing.exit_code == 2
    assert "nope does not exist: expected a folder" in missing.output
    assert not (tmp_path / "kfp").exists()


def test_local_paths_are_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from catsdogs.pipelines.local_run import RunParameters, _absolute

    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.h5").write_bytes(b"x")
    given = RunParameters(source="raw", weights="w.h5", champion_uri="champ")
    made = _absolute(given)
    assert made.source == str(tmp_path.resolve() / "raw")
    assert made.weights == str(tmp_path.resolve() / "w.h5")
    assert made.champion_uri == str(tmp_path.resolve() / "champ")
    remote = RunParameters(source="gs://b/raw", weights="imagenet", champion_uri="gs://b/c")
    assert _absolute(remote) == remote
