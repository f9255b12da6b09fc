"""The whole pipeline under kfp.local (SubprocessRunner, no venv) on a tiny synthetic source."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import typer
from catsdogs.cli.app import app
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import REPO, TRAIN_6000, VGG16_WEIGHTS, needs


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
            "--transfer-weights",
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
    root = re.escape(str(tmp_path / "checkpoints"))
    assert re.fullmatch(rf"{root}/scratch-[0-9a-f]{{16}}", scratch_dir), scratch_dir
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
    given = RunParameters(source="raw", transfer_weights="w.h5", champion_uri="champ")
    made = _absolute(given)
    assert made.source == str(tmp_path.resolve() / "raw")
    assert made.transfer_weights == str(tmp_path.resolve() / "w.h5")
    assert made.champion_uri == str(tmp_path.resolve() / "champ")
    remote = RunParameters(
        source="gs://b/raw", transfer_weights="imagenet", champion_uri="gs://b/c"
    )
    assert _absolute(remote) == remote


def test_make_run_trains_the_books_split_and_leaves_the_slow_scratch_cnn_out() -> None:
    from catsdogs.pipelines.local_run import LOCAL_SCRATCH_EPOCHS

    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    defaults = {param.name: param.default for param in command.params}
    assert (defaults["train_per_class"], defaults["val_per_class"]) == (1000, 500)
    assert (defaults["test_per_class"], defaults["transfer_mode"]) == (500, "features")
    shown = subprocess.run(
        ["make", "-n", "run"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "--trainers transfer " in shown
    assert "-per-class" not in shown  # the split is catsdogs run's default: the book's
    both = subprocess.run(
        ["make", "-n", "run", "TRAINERS=both"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert f"--trainers both --scratch-epochs {LOCAL_SCRATCH_EPOCHS} " in both
    smoke = subprocess.run(
        ["make", "-n", "run-smoke"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert "--train-per-class 20 " in smoke and "--trainers both --scratch-epochs 1 " in smoke


def test_a_cpu_run_of_the_full_recipe_says_what_it_costs(monkeypatch: pytest.MonkeyPatch) -> None:
    from catsdogs.components.common import hardware
    from catsdogs.pipelines.local_run import LOCAL_SCRATCH_EPOCHS, RunParameters, cpu_budget_hint

    monkeypatch.setattr(hardware, "has_nvidia_device", lambda: False)
    hint = cpu_budget_hint(RunParameters(source="x", scratch_epochs=100))
    assert hint is not None and f"--scratch-epochs {LOCAL_SCRATCH_EPOCHS}" in hint
    assert "about 41 min" in hint
    budget = RunParameters(source="x", scratch_epochs=LOCAL_SCRATCH_EPOCHS)
    assert cpu_budget_hint(budget) is None
    assert cpu_budget_hint(RunParameters(source="x", trainers="transfer")) is None
    monkeypatch.setattr(hardware, "has_nvidia_device", lambda: True)
    assert cpu_budget_hint(RunParameters(source="x", scratch_epochs=100)) is None


KFP_LINES = """\
22:16:03.357 - INFO - Running pipeline: \x1b[95m'catsdogs'\x1b[0m
22:16:03.364 - INFO - Executing task \x1b[96m'train-scratch'\x1b[0m
22:16:03.365 - INFO - Streamed logs:
    [KFP Executor 2026-12-01 22:16:03,415 INFO]: Got executor_input:
    {
        "inputs": {"parameterValues": {"epochs": 8}}
    }
    Epoch 1/8  accuracy 0.5500  loss 0.6974  val_accuracy 0.6000  (5.9 s)
    /x/keras/trainer.py:1: UserWarning: Your input ran out of data
    Done: 8 epochs, best val_accuracy 0.6000; wrote /o/model.
22:16:09.432 - INFO - Task \x1b[96m'train-scratch'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m
22:16:09.433 - INFO - Task \x1b[96m'train-scratch'\x1b[0m outputs:
    Output: 0.6
22:16:09.436 - INFO - Executing task \x1b[96m'evaluate'\x1b[0m
    Traceback (most recent call last):
    ValueError: the model is broken
22:16:10.0 - ERROR - Task \x1b[96m'evaluate'\x1b[0m finished with status \x1b[91mFAILURE\x1b[0m
"""


def test_task_console_shows_starts_ends_and_progress_and_logs_every_line(tmp_path: Path) -> None:
    import io

    from catsdogs.pipelines.local_console import TaskConsole, place_logs

    screen = io.StringIO()
    (tmp_path / "logs").mkdir()
    console = TaskConsole(screen, tmp_path / "logs")
    for at in range(0, len(KFP_LINES), 7):  # in pieces, as print() and the pipe deliver them
        console.write(KFP_LINES[at : at + 7])
    console.close()
    steps = [line for line in screen.getvalue().splitlines() if line.startswith("[")]
    assert [line.split("] ", 1)[1].split(" in ")[0] for line in steps] == [
        "train-scratch ...",
        "train-scratch done",
        "evaluate ...",
        "evaluate FAILURE",
    ]
    text = screen.getvalue()
    assert "    Epoch 1/8  accuracy 0.5500" in text
    assert "UserWarning: Your input ran out of data" in text  # a warning stays visible
    assert "    | ValueError: the model is broken" in text  # a failed task's last lines
    assert "executor_input" not in text and "parameterValues" not in text and "\x1b[" not in text
    assert console.times.status == {"train-scratch": "SUCCESS", "evaluate": "FAILURE"}
    run_dir = tmp_path / "run"
    (run_dir / "train-scratch").mkdir(parents=True)
    placed = place_logs(tmp_path / "logs", run_dir)
    assert placed == {
        "train-scratch": run_dir / "train-scratch" / "task.log",
        "evaluate": run_dir / "evaluate.log",
    }
    log = placed["train-scratch"].read_text()
    assert '"parameterValues": {"epochs": 8}' in log and "Output: 0.6" in log
    assert "Running pipeline" in (run_dir / "run.log").read_text()
    assert not (tmp_path / "logs").exists()


def _fake_run(run_dir: Path, scratch: float, transfer: float, promoted: bool) -> None:
    """The files the summary reads, as the pipeline writes them."""
    for trainer, evaluation, accuracy, epochs in (
        ("scratch", "evaluate", scratch, 8),
        ("transfer", "evaluate-2", transfer, 30),
    ):
        model = run_dir / f"train-{trainer}" / "model"
        model.mkdir(parents=True)
        (model / "metrics.json").write_text(json.dumps({"epochs_run": epochs}))
        folder = run_dir / evaluation / "evaluation"
        folder.mkdir(parents=True)
        record = {"accuracy": accuracy, "test_count": 1000, "model": str(model)}
        (folder / "evaluation.json").write_text(json.dumps(record))
        (folder / "report.html").write_text("<html>report</html>")
    better = "scratch" if scratch >= transfer else "transfer"
    (run_dir / "pick-better").mkdir()
    (run_dir / "pick-better" / "executor_output.json").write_text(
        json.dumps({"parameterValues": {"Output": better}})
    )
    (run_dir / "render-activations-2").mkdir()
    (run_dir / "render-activations-2" / "report").write_text("<html>activations</html>")
    (run_dir / "promote-2").mkdir()
    (run_dir / "promote-2" / "executor_output.json").write_text(
        json.dumps({"parameterValues": {"Output": promoted}})
    )


def test_summary_shows_intervals_winner_champion_times_and_report_links(tmp_path: Path) -> None:
    from catsdogs.pipelines.run_summary import summarize

    run_dir = tmp_path / "kfp" / "catsdogs-2026"
    run_dir.mkdir(parents=True)
    _fake_run(run_dir, scratch=0.52, transfer=0.962, promoted=True)
    champion = tmp_path / "champion"
    champion.mkdir()
    (champion / "champion.json").write_text(
        json.dumps({"version": 3, "path": "versions/v0003", "score": 0.962})
    )
    text = summarize(
        run_dir,
        {"prepare-dataset": 21.0, "train-transfer": 190.0},
        wall_seconds=530.0,
        champion_uri=str(champion),
        recipe_scratch_epochs=100,
        budget_scratch_epochs=8,
    )
    assert "Run finished in 8 min 50 s" in text
    assert "Test accuracy on 1000 test photos (95% Wilson interval):" in text
    assert "transfer  0.962  [0.948, 0.972]  30 epochs  <- better" in text
    assert "scratch   0.520  [0.489, 0.551]  8 epochs  not better than chance" in text
    assert "--scratch-epochs 100 trains it all" in text
    assert f"Champion: transfer promoted; {champion} now holds v0003 (accuracy 0.962)." in text
    assert "Time per step: prepare-dataset 21 s, train-transfer 3 min 10 s." in text
    activations = run_dir / "render-activations-2" / "report.html"
    assert activations.read_text() == "<html>activations</html>"
    assert f"activations, transfer  {activations.as_uri()}" in text
    index = run_dir / "index.html"
    assert f"Open them all: python3 -m webbrowser {index.as_uri()}" in text
    page = index.read_text()
    for report in ("evaluate/evaluation/report.html", "render-activations-2/report.html"):
        assert f'href="{report}"' in page and (run_dir / report).is_file()
    assert f"Artifacts under {run_dir}" in text


def test_summary_says_when_the_gate_kept_the_champion(tmp_path: Path) -> None:
    from catsdogs.pipelines.run_summary import summarize

    _fake_run(tmp_path, scratch=0.70, transfer=0.95, promoted=False)
    champion = tmp_path / "champion"
    champion.mkdir()
    (champion / "champion.json").write_text(
        json.dumps({"version": 1, "path": "versions/v0001", "score": 0.97})
    )
    summary = {"wall_seconds": 1.0, "recipe_scratch_epochs": 8, "budget_scratch_epochs": 8}
    text = summarize(tmp_path, {}, champion_uri=str(champion), **summary)
    assert f"not promoted; the champion at {champion} stays v0001 (accuracy 0.970)" in text
    assert "not better than chance" not in text and "trains it all" not in text
    assert "Champion: none set" in summarize(tmp_path, {}, champion_uri="", **summary)
    assert "No scratch CNN" not in text


def test_summary_says_how_to_add_the_scratch_cnn_when_it_was_left_out(tmp_path: Path) -> None:
    from catsdogs.pipelines.run_summary import summarize

    _fake_run(tmp_path, scratch=0.70, transfer=0.95, promoted=True)
    shutil.rmtree(tmp_path / "evaluate")  # a --trainers transfer run evaluates one model,
    (tmp_path / "train-transfer").rename(tmp_path / "train-transfer-2")  # in its own branch
    record = json.loads((tmp_path / "evaluate-2" / "evaluation" / "evaluation.json").read_text())
    record["model"] = str(tmp_path / "train-transfer-2" / "model")
    (tmp_path / "evaluate-2" / "evaluation" / "evaluation.json").write_text(json.dumps(record))
    text = summarize(
        tmp_path,
        {},
        wall_seconds=1.0,
        champion_uri="",
        recipe_scratch_epochs=100,
        budget_scratch_epochs=8,
    )
    assert "  transfer  0.950  [0.935, 0.962]  30 epochs\n" in text
    assert "No scratch CNN in this run: --trainers both --scratch-epochs 8 adds it" in text


@pytest.mark.slow
@needs(TRAIN_6000)
@needs(VGG16_WEIGHTS)
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_smoke_runs_the_whole_graph_with_a_clean_console(tmp_path: Path) -> None:
    """``make run-smoke``: real photos, real VGG16 weights, the console a user sees."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        ["make", "--no-print-directory", "run-smoke", f"OUT={tmp_path}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    console = done.stdout + done.stderr
    assert done.returncode == 0, console
    (run_dir,) = (tmp_path / "run-smoke" / "kfp").iterdir()
    tasks = sorted(p.name for p in run_dir.iterdir() if p.is_dir())
    assert {"prepare-dataset", "train-scratch", "train-transfer", "pick-better"} <= set(tasks)
    for task in tasks:
        assert len(re.findall(rf"^\[[\d:]+\] {task} \.\.\.$", console, re.M)) == 1, task
        assert len(re.findall(rf"^\[[\d:]+\] {task} done in ", console, re.M)) == 1, task
        log = (run_dir / task / "task.log").read_text()
        assert "KFP Executor" in log, task  # the whole log is kept beside the artifacts
        for word in ("cuInit", "absl", "cpu_feature_guard"):
            assert word not in log, (task, word)
    for word in ("cuInit", "absl", "cpu_feature_guard", "KFP Executor", "executor_input"):
        assert word not in console, word
    assert re.search(r"^    Epoch 1/5 ", console, re.M)  # the tasks' own progress lines
    assert "Test accuracy on 20 test photos (95% Wilson interval):" in console
    assert re.search(r"^  transfer  0\.\d{3}  \[0\.\d{3}, [01]\.\d{3}\]", console, re.M)
    assert "Champion: " in console and "Time per step: " in console
    assert f"Open them all: python3 -m webbrowser {(run_dir / 'index.html').as_uri()}" in console
    assert (tmp_path / "run-smoke" / "champion" / "champion.json").is_file()


def test_a_failed_task_shows_its_error_and_where_its_whole_log_is(tmp_path: Path) -> None:
    source = tmp_path / "photos"
    source.mkdir()
    (source / "README.md").write_text("no photos here")
    result = CliRunner().invoke(
        app, ["run", "--source", str(source), "--output", str(tmp_path / "out")]
    )
    assert result.exit_code == 2, result.output
    (run_dir,) = (tmp_path / "out" / "kfp").iterdir()
    log = run_dir / "prepare-dataset" / "task.log"
    assert f"prepare-dataset failed; its whole log: {log}" in result.output
    assert "prepare-dataset FAILURE in " in result.output
    # A user error (a CatsdogsError) ends the run as its own line; the traceback stays in the log.
    assert "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: Expected a folder of <class>.<id>.jpg files")
    assert "found 0 cat and 0 dog images" in last
    assert "SourceError: Expected a folder of <class>.<id>.jpg files" in log.read_text()
    assert "Traceback (most recent call last):" in log.read_text()
