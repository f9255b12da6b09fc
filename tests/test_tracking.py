"""Experiment tracking against the real thing: an `mlflow server` (sqlite, local artifacts) on
127.0.0.1, read back through MLflow's own client, and TensorBoard's own event reader."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from catsdogs.cli.app import app
from catsdogs.components.common import config, tracking
from catsdogs.components.promote.record import ChampionRecord
from typer.testing import CliRunner

from tests.loopback_server import LoopbackServer
from tests.test_run_local import write_source

WARNING = "MLflow tracking at"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real `mlflow server` (sqlite backend, artifacts served from a local folder)."""
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
        env={**os.environ, "MLFLOW_TRACKING_URI": ""},
        start_new_session=True,
    )
    deadline = time.monotonic() + 240  # the first start migrates the sqlite schema (~1 min here)
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                raise RuntimeError(
                    f"mlflow server did not start; see {root / 'server.log'}"
                ) from None
            time.sleep(0.5)
    try:
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        log.close()


@pytest.fixture
def tracked(mlflow_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The tasks of this test log to the server (in an experiment of the test's own)."""
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", config.MLFLOW_PARENT_RUN_ID):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(config.MLFLOW_TRACKING_URI, mlflow_server)
    return mlflow_server


def client(url: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url)


def runs_of(url: str, experiment: str) -> dict[str, list]:
    """The experiment's runs by name."""
    found = client(url).get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r}"
    out: dict[str, list] = {}
    for run in client(url).search_runs([found.experiment_id], max_results=100):
        out.setdefault(run.info.run_name, []).append(run)
    return out


def metric_steps(url: str, run_id: str, key: str) -> list[tuple[int, float]]:
    history = client(url).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in history)


def board_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files in ``folder``, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    reader = event_accumulator.EventAccumulator(
        str(folder), size_guidance={event_accumulator.TENSORS: 0}
    )
    reader.Reload()
    scalars = {}
    for tag in reader.Tags()["tensors"]:
        values = [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in reader.Tensors(tag)]
        if all(v.ndim == 0 and v.dtype.kind == "f" for _, v in values):
            scalars[tag] = [(step, float(v)) for step, v in values]
    return scalars


def check_board(logs: Path, history: dict[str, list[float]]) -> None:
    """loss and accuracy of every epoch, training and validation, equal history.json's."""
    epochs = len(history["loss"])
    for sub, prefix in (("train", ""), ("validation", "val_")):
        scalars = board_scalars(logs / sub)
        for name in ("loss", "accuracy"):
            steps = scalars[f"epoch_{name}"]
            assert [s for s, _ in steps] == list(range(epochs)), (sub, name, steps)
            assert [v for _, v in steps] == pytest.approx(history[prefix + name], rel=1e-5)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_pipeline(tmp_path: Path, *extra: str) -> tuple[Any, Path]:
    source = write_source(tmp_path / "raw")
    arguments = [
        "run",
        "--source",
        str(source),
        "--output",
        str(tmp_path / "out"),
        "--train-per-class",
        "2",
        "--val-per-class",
        "2",
        "--test-per-class",
        "2",
        "--scratch-epochs",
        "2",
        "--transfer-epochs",
        "2",
        "--batch-size",
        "4",
        "--transfer-weights",
        "none",
        "--champion-uri",
        str(tmp_path / "champion"),
        *extra,
    ]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in (tmp_path / "out" / "kfp").iterdir() if p.is_dir()]
    return result, run_dir


def task_warnings(result: Any, run_dir: Path) -> list[str]:
    """The tracking warnings of a run: its console and every task's log."""
    texts = [result.output] + [p.read_text() for p in run_dir.rglob("task.log")]
    return [line for text in texts for line in text.splitlines() if WARNING in line]


@pytest.mark.slow
def test_catsdogs_run_tracks_trainers_evaluations_and_the_champion(
    tracked: str, tmp_path: Path
) -> None:
    board_root = tmp_path / "tensorboard"
    result, run_dir = run_pipeline(
        tmp_path, "--mlflow-uri", tracked, "--tensorboard-root", str(board_root)
    )
    assert not task_warnings(result, run_dir)
    runs = runs_of(tracked, tracking.EXPERIMENT)
    (parent,) = [r for name, rs in runs.items() if name.startswith("catsdogs-") for r in rs]
    assert parent.info.status == "FINISHED"
    experiment = parent.info.experiment_id
    assert (
        f"MLflow: {tracked}/#/experiments/{experiment}/runs/{parent.info.run_id}" in result.output
    )
    assert f"TensorBoard: tensorboard --logdir {board_root}" in result.output
    children = [r for rs in runs.values() for r in rs if r is not parent]
    assert {r.data.tags.get("mlflow.parentRunId") for r in children} == {parent.info.run_id}

    # A run per trainer: settings as params, every epoch's metrics with its step, the model folder.
    for kind, task in (("train_scratch", "train-scratch"), ("train_transfer", "train-transfer")):
        (run,) = runs[kind]
        model = run_dir / task / "model"
        history = json.loads((model / "history.json").read_text())
        assert run.info.status == "FINISHED"
        assert run.data.params["settings.epochs"] == "2"
        assert run.data.params["settings.batch_size"] == "4"
        for key, values in history.items():
            steps = metric_steps(tracked, run.info.run_id, key)
            assert [s for s, _ in steps] == [0, 1], (kind, key)
            assert [v for _, v in steps] == pytest.approx(values)
        metrics = json.loads((model / "metrics.json").read_text())
        assert run.data.metrics["best_val_accuracy"] == pytest.approx(metrics["best_val_accuracy"])
        assert run.data.tags["catsdogs.model_sha256"] == sha256(model / "model.keras")
        names = {a.path for a in client(tracked).list_artifacts(run.info.run_id, "model")}
        assert {"model/model.keras", "model/curves.png", "model/history.json"} <= names
        # TensorBoard: in the model folder and under the root, <trainer>/<start time>/.
        check_board(model / "logs", history)
        (copied,) = (board_root / kind).iterdir()
        check_board(copied, history)

    # Each evaluation: its scalars with the interval, the model it scored, its report.
    evaluations = {r.data.tags["catsdogs.model_sha256"]: r for r in runs["evaluate"]}
    assert len(evaluations) == 2
    for task in ("evaluate", "evaluate-2"):
        folder = next((run_dir / task).iterdir())
        evaluation = json.loads((folder / "evaluation.json").read_text())
        run = evaluations[evaluation["model_sha256"]]
        for key in ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "loss", "test_count"):
            assert run.data.metrics[key] == pytest.approx(evaluation[key]), key
        names = {a.path for a in client(tracked).list_artifacts(run.info.run_id, "evaluation")}
        assert "evaluation/report.html" in names

    # The registry names the model champion.json names.
    record = json.loads((tmp_path / "champion" / "champion.json").read_text())
    version = client(tracked).get_model_version_by_alias(tracking.REGISTERED_MODEL, "champion")
    assert version.tags["champion_version"] == str(record["version"])
    assert version.tags["model_sha256"] == record["model_sha256"]
    assert version.tags["source"] == str(tmp_path / "champion" / record["path"])
    assert float(version.tags["accuracy"]) == pytest.approx(record["metrics"]["accuracy"])
    (promote,) = runs["promote"]
    assert version.run_id == promote.info.run_id
    from mlflow.artifacts import download_artifacts

    downloaded = Path(
        download_artifacts(
            f"models:/{tracking.REGISTERED_MODEL}@champion",
            dst_path=str(tmp_path / "dl"),
            tracking_uri=tracked,
        )
    )
    assert sha256(downloaded / "model.keras") == record["model_sha256"]


def brightness_model_dir(direction: float, folder: Path) -> str:
    from tests.test_promote import brightness_model
    from tests.tiny_models import save_model_dir

    return save_model_dir(brightness_model(direction), folder)


def test_each_promotion_registers_a_version_and_moves_the_champion_alias(
    tracked: str, tmp_path: Path, tiny_dataset
) -> None:
    from catsdogs.components.evaluate.core import evaluate
    from catsdogs.components.promote.core import promote

    data = tiny_dataset(per_class=4, size=32)
    champion_uri = str(tmp_path / "champion")

    def promoted(name: str, direction: float):
        model = brightness_model_dir(direction, tmp_path / name)
        scored = evaluate(model, data, str(tmp_path / f"{name}-eval")).output
        result = promote(model, scored, data, champion_uri)
        record = json.loads(Path(champion_uri, "champion.json").read_text())
        alias = client(tracked).get_model_version_by_alias(tracking.REGISTERED_MODEL, "champion")
        return result, record, alias

    first, record, alias = promoted("bad", -1.0)
    assert first.promoted and record["version"] == 1
    assert alias.tags["champion_version"] == "1"
    assert alias.tags["model_sha256"] == record["model_sha256"]
    second, record, moved = promoted("good", 1.0)
    assert second.promoted and record["version"] == 2
    assert moved.version != alias.version
    assert moved.tags["champion_version"] == "2"
    assert moved.tags["model_sha256"] == record["model_sha256"]
    assert moved.tags["source"] == str(Path(champion_uri, record["path"]))
    # The first version stays in the registry, under its own tags.
    kept = client(tracked).get_model_version(tracking.REGISTERED_MODEL, alias.version)
    assert kept.tags["champion_version"] == "1" and not kept.aliases
    # A model that does not beat the champion: nothing registered, the alias stays.
    third, record, same = promoted("coin", 0.0)
    assert not third.promoted and record["version"] == 2
    assert same.version == moved.version


class Refusing(BaseHTTPRequestHandler):
    """A tracking server that refuses everything (403), as behind a proxy without credentials."""

    def _refuse(self) -> None:
        body = b'{"error_code": "PERMISSION_DENIED", "message": "no"}'
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _refuse

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("server", ["down", "refusing"])
def test_a_tracking_server_that_is_down_or_refuses_warns_once_and_training_goes_on(
    server: str, tiny_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    from catsdogs.components.evaluate.core import evaluate
    from catsdogs.components.promote.core import promote
    from catsdogs.components.train_scratch.core import ScratchSettings, train_scratch

    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    data = tiny_dataset(per_class=2, size=48)
    with LoopbackServer(Refusing) as refusing:
        url = refusing.url if server == "refusing" else f"http://127.0.0.1:{_free_port()}"
        monkeypatch.setenv(config.MLFLOW_TRACKING_URI, url)
        started = time.monotonic()
        model = str(tmp_path / "model")
        settings = ScratchSettings(epochs=2, batch_size=4, image_size=(48, 48))
        trained = train_scratch(data, model, settings)
        scored = evaluate(model, data, str(tmp_path / "eval"))
        gate = promote(model, scored.output, data, str(tmp_path / "champion"))
        took = time.monotonic() - started
    assert trained.status == "trained" and trained.metrics["epochs_run"] == 2
    assert (
        Path(model, "model.keras").is_file() and Path(tmp_path, "eval", "evaluation.json").is_file()
    )
    assert gate.promoted and Path(tmp_path, "champion", "champion.json").is_file()
    check_board(Path(model, "logs"), json.loads(Path(model, "history.json").read_text()))
    err = capfd.readouterr().err
    warnings = [line for line in err.splitlines() if WARNING in line]
    # One line per task (the trainer, evaluate, promote), naming the server; nothing else of it.
    assert len(warnings) == 3, err
    assert all(line.startswith("Warning: ") and url in line for line in warnings)
    assert "Retrying" not in err and "Traceback" not in err
    assert took < 240


def test_catsdogs_run_with_the_server_down_warns_once_and_its_tasks_run_without_mlflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    """`catsdogs run`'s own run fails to open: one line, and its tasks get no tracking server.

    (Each task with a server that is down warns once and goes on: the test above.)
    """
    monkeypatch.delenv(config.MLFLOW_TRACKING_URI, raising=False)
    monkeypatch.delenv(config.MLFLOW_PARENT_RUN_ID, raising=False)
    down = f"http://127.0.0.1:{_free_port()}"
    board = str(tmp_path / "tensorboard")
    with tracking.pipeline_run(down, board) as tracked:
        run = tracked.run
        assert not run.enabled and run.link() is None
        assert tracked.ending("RUN") == f"TensorBoard: tensorboard --logdir {board}"
        assert config.mlflow_tracking_uri() is None and config.mlflow_parent_run_id() is None
        assert config.tensorboard_root() == board  # TensorBoard needs no server
        with tracking.task_run("evaluate") as task:  # what a task then does
            assert not task.enabled
    assert config.mlflow_tracking_uri() is None and config.tensorboard_root() is None
    warnings = [line for line in capfd.readouterr().err.splitlines() if WARNING in line]
    assert len(warnings) == 1 and down in warnings[0] and "catsdogs run goes on" in warnings[0]


def test_no_tracking_server_means_no_mlflow_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd
) -> None:
    import mlflow.tracking

    def no_client(*args: object, **kwargs: object) -> None:
        raise AssertionError("an MLflow client was made without a tracking server")

    monkeypatch.delenv(config.MLFLOW_TRACKING_URI, raising=False)
    monkeypatch.setattr(mlflow.tracking, "MlflowClient", no_client)
    with tracking.task_run("evaluate") as run:
        assert not run.enabled and run.client is None
        run.log_params({"threshold": 0.5})
        run.log_metrics({"accuracy": 1.0})
        run.log_folder(str(tmp_path), "evaluation")
        record = ChampionRecord(version=1, path="versions/v0001", model_sha256="0" * 64)
        assert tracking.register_champion(run, str(tmp_path), record) is None
    assert WARNING not in capfd.readouterr().err


def test_compile_sets_the_tracking_environment_of_every_task(tmp_path: Path) -> None:
    import yaml

    output = tmp_path / "pipeline.yaml"
    result = CliRunner().invoke(
        app,
        [
            "compile",
            "--output",
            str(output),
            "--mlflow-uri",
            "http://mlflow.mlflow:5000",
            "--tensorboard-root",
            "gs://bucket/tensorboard",
            "--allow-tag",
        ],
    )
    assert result.exit_code == 0, result.output
    spec = next(yaml.safe_load_all(output.read_text()))  # the pipeline spec, then the platform
    executors = spec["deploymentSpec"]["executors"]
    expected = {
        "MLFLOW_TRACKING_URI": "http://mlflow.mlflow:5000",
        "CATSDOGS_TENSORBOARD_ROOT": "gs://bucket/tensorboard",
    }
    tracked_tasks = 0
    for name, executor in executors.items():
        env = {e["name"]: e["value"] for e in executor["container"].get("env", []) if "value" in e}
        if name.startswith(("exec-train", "exec-evaluate", "exec-promote")):
            tracked_tasks += 1
            assert expected.items() <= env.items(), name
    assert tracked_tasks >= 4  # both trainers, their evaluations, the champion gate
    bad = CliRunner().invoke(
        app, ["compile", "--output", str(output), "--tensorboard-root", "logs", "--allow-tag"]
    )
    assert bad.exit_code == 2 and "tensorboard_root must be a bucket prefix" in bad.output
