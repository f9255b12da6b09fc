"""The champion gate: first champion, better/worse/margin, re-evaluation, concurrent promotions."""

from __future__ import annotations

import hashlib
import inspect
import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from catsdogs.components.common import storage
from catsdogs.components.common.errors import SettingsError
from catsdogs.components.evaluate import core
from catsdogs.components.promote import champion
from catsdogs.components.promote import core as gate
from typer.testing import CliRunner

from tests.tiny_models import save_model_dir


def brightness_model(direction: float, size: int = 32):
    """P(dog) from mean brightness: the tiny dataset's dogs are bright, its cats dark.

    ``direction`` 1 gives a good model, -1 a bad one, 0 a constant 0.5.
    """
    import keras

    inputs = keras.Input((size, size, 3), name="image")
    x = keras.layers.GlobalAveragePooling2D(name="mean")(inputs)
    dense = keras.layers.Dense(1, activation="sigmoid", name="p_dog")
    outputs = dense(x)
    dense.set_weights([np.full((3, 1), direction * 0.05, "float32"), np.array([-18.0 * direction])])
    return keras.Model(inputs, outputs)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("promote-models")
    return {
        "good": save_model_dir(brightness_model(1.0), root / "good"),
        "good2": save_model_dir(brightness_model(1.2), root / "good2"),
        "coin": save_model_dir(brightness_model(0.0), root / "coin"),
        "bad": save_model_dir(brightness_model(-1.0), root / "bad"),
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from tests.conftest import make_tiny_dataset

    return make_tiny_dataset(tmp_path_factory.mktemp("promote-data") / "d", per_class=4, size=32)


@pytest.fixture(scope="module")
def evaluations(models, data, tmp_path_factory):
    root = tmp_path_factory.mktemp("promote-evals")
    return {name: core.evaluate(m, data, str(root / name)).output for name, m in models.items()}


def assert_consistent(location: str, winner_model: str, winner_eval: str, count: int = 1) -> dict:
    """Pointer, model and metrics agree, and nothing else (no orphans, no lock) is there."""
    record = json.loads(storage.read_text(storage.join(location, "champion.json")))
    folder = storage.join(location, record["path"])
    model_bytes = storage.read_bytes(storage.join(folder, "model.keras"))
    assert model_bytes == Path(winner_model, "model.keras").read_bytes()
    assert hashlib.sha256(model_bytes).hexdigest() == record["model_sha256"]
    stored = json.loads(storage.read_text(storage.join(folder, "evaluation.json")))
    assert stored == json.loads(Path(winner_eval, "evaluation.json").read_text())
    assert record["score"] == stored["accuracy"]
    files = [n for n in storage.list_files(location) if n.startswith("versions/")]
    versions = {n.split("/")[1] for n in files}
    assert f"v{record['version']:04d}" in versions
    assert len(versions) == count  # a promotion that lost a race removed what it wrote
    for version in versions:  # every version folder is complete
        assert {f"versions/{version}/evaluation.json", f"versions/{version}/model.keras"} <= set(
            files
        )
    assert ".champion.lock" not in storage.list_files(location)
    pointer = champion.read_pointer(location).record
    assert pointer is not None and storage.join(location, pointer.path) == folder
    return record


def test_gate_first_better_worse_margin_same(tmp_path, models, data, evaluations):
    location = str(tmp_path / "champion")
    first = gate.promote(models["coin"], evaluations["coin"], data, location)
    assert first.promoted and first.version == 1 and "first" in first.reason
    assert_consistent(location, models["coin"], evaluations["coin"])

    worse = gate.promote(models["bad"], evaluations["bad"], data, location)
    assert not worse.promoted and worse.version == 1 and "does not beat" in worse.reason
    assert worse.champion_score == pytest.approx(0.5) and not worse.champion_reevaluated

    too_little = gate.PromoteSettings(margin=0.6)
    held = gate.promote(models["good"], evaluations["good"], data, location, too_little)
    assert not held.promoted and "by more than 0.6" in held.reason

    better = gate.promote(models["good"], evaluations["good"], data, location)
    assert better.promoted and better.version == 2 and better.score > 0.5
    record = assert_consistent(location, models["good"], evaluations["good"], count=2)
    assert record["previous_version"] == 1
    # The previous champion stays under its versioned name.
    old = Path(location, "versions", "v0001", "model.keras").read_bytes()
    assert old == Path(models["coin"], "model.keras").read_bytes()

    again = gate.promote(models["good"], evaluations["good"], data, location)
    assert not again.promoted and again.reason == "this model is already the champion"


def test_champion_measured_on_another_split_is_reevaluated(tmp_path, models, data, evaluations):
    from tests.conftest import make_tiny_dataset

    location = str(tmp_path / "champion")
    gate.promote(models["good"], evaluations["good"], data, location)
    other = make_tiny_dataset(tmp_path / "other", per_class=3, size=32, seed=5)
    new_eval = core.evaluate(models["good2"], other, str(tmp_path / "eval-other")).output
    result = gate.promote(models["good2"], new_eval, other, location)
    assert result.champion_reevaluated
    expected = core.evaluate(models["good"], other, str(tmp_path / "check")).metrics["accuracy"]
    assert result.champion_score == pytest.approx(expected)
    assert not result.promoted  # same decision boundary (mean brightness 120): equal is not better
    with pytest.raises(SettingsError, match="another test split"):
        gate.promote(models["good2"], new_eval, data, location)


def test_version_keeps_the_trainers_metrics_beside_the_evaluation(
    tmp_path, models, data, evaluations
):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(models["good"], model)
    summary = {"best_val_accuracy": 0.75, "epochs_run": 3}
    (model / "metrics.json").write_text(json.dumps(summary))
    location = str(tmp_path / "champion")
    assert gate.promote(str(model), evaluations["good"], data, location).promoted
    version = Path(location, "versions", "v0001")
    assert json.loads((version / "metrics.json").read_text()) == summary
    evaluation = json.loads((version / "evaluation.json").read_text())
    assert evaluation == json.loads(Path(evaluations["good"], "evaluation.json").read_text())


def test_version_without_evaluation_json_is_reevaluated(tmp_path, models, data, evaluations):
    location = str(tmp_path / "champion")
    gate.promote(models["coin"], evaluations["coin"], data, location)
    version = Path(location, "versions", "v0001")
    (version / "evaluation.json").rename(version / "metrics.json")  # the layout before the rename
    result = gate.promote(models["good"], evaluations["good"], data, location)
    assert result.champion_reevaluated and result.champion_score == pytest.approx(0.5)
    assert result.promoted and result.version == 2


def _race(monkeypatch, location, models, evaluations, data, retries):
    """Two threads that both read the champion before either writes: the real race."""
    barrier = threading.Barrier(2, timeout=20)
    original = champion.read_pointer
    state = threading.local()

    def racing_read(uri):
        pointer = original(uri)
        if not getattr(state, "waited", False):
            state.waited = True
            barrier.wait()
        return pointer

    monkeypatch.setattr(champion, "read_pointer", racing_read)
    outcomes: dict[str, object] = {}
    settings = gate.PromoteSettings(retries=retries)

    def run(name):
        try:
            outcomes[name] = gate.promote(models[name], evaluations[name], data, location, settings)
        except Exception as error:  # the loser's error is what we check
            outcomes[name] = error

    threads = [threading.Thread(target=run, args=(n,)) for n in ("good", "good2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    monkeypatch.setattr(champion, "read_pointer", original)
    return outcomes


@pytest.mark.parametrize("where", ["local", "gcs", "s3"])
def test_concurrent_promotions_leave_one_consistent_champion(
    where, request, tmp_path, monkeypatch, models, evaluations, data
):
    location = str(tmp_path / "champion")
    if where != "local":
        location = (
            request.getfixturevalue("bucket" if where == "gcs" else "s3_bucket") + "/champion"
        )
    outcomes = _race(monkeypatch, location, models, evaluations, data, retries=0)
    winners = [n for n, o in outcomes.items() if isinstance(o, gate.PromotionResult)]
    losers = [n for n, o in outcomes.items() if isinstance(o, champion.PromotionConflictError)]
    assert len(winners) == 1 and len(losers) == 1, outcomes
    winner = outcomes[winners[0]]
    assert winner.promoted and "another promotion" in str(outcomes[losers[0]])
    # Usually version 1; version 2 when the loser claimed v1 first and then lost the pointer.
    record = assert_consistent(location, models[winners[0]], evaluations[winners[0]])
    assert record["version"] == winner.version


def test_concurrent_loser_retries_and_redecides(tmp_path, monkeypatch, models, evaluations, data):
    location = str(tmp_path / "champion")
    outcomes = _race(monkeypatch, location, models, evaluations, data, retries=2)
    results = list(outcomes.values())
    assert all(isinstance(r, gate.PromotionResult) for r in results), outcomes
    assert sorted(r.promoted for r in results) == [False, True], outcomes
    loser = next(r for r in results if not r.promoted)
    winner = next(n for n, r in outcomes.items() if r.promoted)
    assert "does not beat" in loser.reason and loser.version == outcomes[winner].version, outcomes
    assert_consistent(location, models[winner], evaluations[winner])


def test_concurrent_cli_processes(tmp_path, models, evaluations, data):
    location = str(tmp_path / "champion")
    commands = [
        [
            sys.executable,
            "-m",
            "catsdogs.cli",
            "promote",
            "--model",
            models[n],
            "--evaluation",
            evaluations[n],
            "--data",
            data,
            "--champion",
            location,
            "--retries",
            "0",
            "--json",
        ]
        for n in ("good", "good2")
    ]
    processes = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    outputs = [(p.wait(120), *p.communicate()) for p in processes]
    promoted = [json.loads(out)["promoted"] for code, out, _ in outputs if code == 0]
    conflicts = [err for code, _, err in outputs if code == 2]
    assert promoted.count(True) == 1, outputs
    assert len(promoted) + len(conflicts) == 2, outputs
    assert all("another promotion" in err for err in conflicts)
    record = json.loads(Path(location, "champion.json").read_text())
    winner = "good" if record["source_model"] == models["good"] else "good2"
    assert_consistent(location, models[winner], evaluations[winner])


def test_lock_left_by_a_killed_promotion_is_taken_over(
    tmp_path, monkeypatch, models, evaluations, data
):
    location = tmp_path / "champion"
    location.mkdir()
    # What a promotion killed while holding the lock leaves (old and new lock file formats).
    (location / ".champion.lock").write_text("12345\n")
    monkeypatch.setattr(champion, "LOCK_WAIT_S", 0.5)
    assert gate.promote(models["coin"], evaluations["coin"], data, str(location)).promoted
    assert_consistent(str(location), models["coin"], evaluations["coin"])
    (location / ".champion.lock").write_text('{"pid": 99999999, "host": "gone", "since": "x"}')
    assert gate.promote(models["good"], evaluations["good"], data, str(location)).promoted
    assert_consistent(str(location), models["good"], evaluations["good"], count=2)


def test_lock_of_a_running_promotion_is_respected(tmp_path, monkeypatch, models, evaluations, data):
    import os
    import socket

    location = tmp_path / "champion"
    monkeypatch.setattr(champion, "LOCK_WAIT_S", 0.1)
    with champion._locked(location):  # another promotion holds the lock
        with pytest.raises(champion.PromotionConflictError, match="another promotion is running"):
            gate.promote(models["good"], evaluations["good"], data, str(location))
        holder = json.loads((location / ".champion.lock").read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert sorted(p.name for p in location.iterdir()) == [
            ".champion.lock"
        ]  # nothing half-written
    assert not (location / ".champion.lock").exists()


def test_evaluation_of_another_model_is_refused(tmp_path, models, evaluations, data):
    location = tmp_path / "champion"
    with pytest.raises(gate.errors.SettingsError, match="evaluation of another model"):
        gate.promote(models["good2"], evaluations["good"], data, str(location))
    assert not location.exists()


def test_champion_location_that_is_a_file_is_refused(tmp_path, models, evaluations, data):
    location = tmp_path / "champion"
    location.write_text("not a folder")
    for where in (location, location / "sub"):
        with pytest.raises(gate.errors.OutputConflictError, match="is not a folder"):
            gate.promote(models["good"], evaluations["good"], data, str(where))
    assert location.read_text() == "not a folder"
    from catsdogs.cli.app import app

    args = ["--model", models["good"], "--evaluation", evaluations["good"], "--data", data]
    result = CliRunner().invoke(app, ["promote", *args, "--champion", str(location)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"Error: --champion {location} is not a folder: {location} is a file. Point --champion "
        "at a folder (new or existing) or a gs:// or s3:// prefix."
    ]


@pytest.mark.parametrize("where", ["local", "gcs", "s3"])
def test_pointer_switch_that_landed_but_reported_failure_keeps_its_version(
    where, request, tmp_path, monkeypatch, models, evaluations, data
):
    """A pointer write that lands but raises (a lost answer) must not delete what it points at."""
    location = str(tmp_path / "champion")
    if where != "local":
        location = (
            request.getfixturevalue("bucket" if where == "gcs" else "s3_bucket") + "/champion"
        )
    original = storage.write_text
    failed = []

    def lands_then_fails(uri, text, **kwargs):
        original(uri, text, **kwargs)
        if str(uri).endswith("/champion.json") and not failed:
            failed.append(uri)
            raise storage.PreconditionFailedError(f"Could not write {uri}: answer lost.")

    monkeypatch.setattr(storage, "write_text", lands_then_fails)
    result = gate.promote(models["good"], evaluations["good"], data, location)
    assert failed and result.promoted and result.version == 1
    monkeypatch.setattr(storage, "write_text", original)
    assert_consistent(location, models["good"], evaluations["good"])


def test_wrapper_and_cli(tmp_path, models, evaluations, data):
    from catsdogs.cli import evaluate as cli
    from catsdogs.cli.app import app
    from catsdogs.components.promote.component import promote
    from kfp import dsl

    location = str(tmp_path / "champion")
    promoted = promote.python_func(
        model=dsl.Model(uri=models["coin"], name="model"),
        evaluation=dsl.Artifact(uri=evaluations["coin"], name="evaluation"),
        data=dsl.Dataset(uri=data, name="data"),
        champion_uri=location,
        margin=0.0,
    )
    assert promoted is True
    runner = CliRunner()
    base = ["promote", "--data", data, "--champion", location]
    result = runner.invoke(
        app, [*base, "--model", models["good"], "--evaluation", evaluations["good"], "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) | {"promoted": True, "version": 2} == json.loads(result.stdout)
    bad = runner.invoke(
        app, [*base, "--model", models["good"], "--evaluation", str(tmp_path), "--margin", "0"]
    )
    assert bad.exit_code == 2 and "has no evaluation.json" in bad.stderr
    negative = runner.invoke(
        app,
        [*base, "--model", models["good"], "--evaluation", evaluations["good"], "--margin", "-1"],
    )
    assert negative.exit_code == 2 and "margin must be in [0, 1)" in negative.stderr
    # Defaults agree: dataclass, KFP wrapper, CLI.
    defaults = gate.PromoteSettings()
    assert inspect.signature(promote.python_func).parameters["margin"].default == defaults.margin
    command = inspect.signature(cli.promote).parameters
    for name in ("margin", "metric", "retries"):
        assert command[name].default == getattr(defaults, name), name
    assert inspect.signature(cli.evaluate).parameters["margin"].default == defaults.margin


def test_evaluate_cli_runs_the_gate(tmp_path, models, data):
    from catsdogs.cli.app import app

    location = str(tmp_path / "champion")
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--model",
            models["good"],
            "--data",
            data,
            "--output",
            str(tmp_path / "e"),
            "--champion",
            location,
            "--margin",
            "0.1",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout.splitlines()[1])
    assert decision["promoted"] and decision["version"] == 1
    assert_consistent(location, models["good"], str(tmp_path / "e"))
