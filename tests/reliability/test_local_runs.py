"""``catsdogs run`` into an output other runs use: its own folder, dead runs marked, no secrets.

One real kfp.local run (SubprocessRunner) of a one-task pipeline stands in for the catsdogs graph:
its task writes a newer run folder beside its own, as a second ``catsdogs run`` started later
into the same ``--output`` does. Before it, a run is killed (``kill -9``) while its task runs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.reliability.tiny_pipeline import LATER_RUN

SECRET_SOURCE = (
    "https://alice:s3cr3t-pw@data.example.com/photos.zip?X-Goog-Signature=0badc0ffee&alt=media"
)
SECRETS = ("s3cr3t-pw", "0badc0ffee", "alice:")

_KILLED_RUN = """
import os, signal, sys
from pathlib import Path
from catsdogs.pipelines import run_folders

root = Path(sys.argv[1])
with run_folders.claimed(root, {"source": sys.argv[2]}) as run:
    name = run._resource_name("catsdogs")  # as kfp.local asks when the run starts
    (run.path / "prepare-dataset").mkdir(parents=True)
    (run.logs / "prepare-dataset.log").write_text("Validating: 40%\\n")
    print(run.run_id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _tiny_pipeline():
    from tests.reliability.tiny_pipeline import tiny

    return lambda **arguments: tiny(source=arguments["source"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A killed run, then a real local run into the same output; what each left."""
    from catsdogs.pipelines import local_run

    output = tmp_path_factory.mktemp("runs")
    root = output / "kfp"
    root.mkdir()
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_RUN, str(root), SECRET_SOURCE],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
    dead_id = killed.stdout.strip()
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(local_run, "build_pipeline", lambda options: _tiny_pipeline())
    import contextlib
    import io

    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            run = local_run.run_local(
                local_run.RunParameters(source=SECRET_SOURCE, trainers="transfer"), output
            )
    finally:
        monkeypatch.undo()
    return {"root": root, "run": run, "dead_id": dead_id, "printed": printed.getvalue()}


def test_a_run_finds_its_own_folder_not_the_newest(runs: dict) -> None:
    run_dir = runs["run"].run_dir
    assert (run_dir / "fingerprint-source" / "marker").read_text() == "mine"
    assert run_dir.name != LATER_RUN
    assert json.loads((run_dir / "run.json").read_text())["status"] == "succeeded"
    assert (run_dir / "fingerprint-source" / "task.log").is_file()
    newer = runs["root"] / LATER_RUN
    assert sorted(p.name for p in newer.iterdir()) == ["fingerprint-source"], "another run's folder"
    assert not list(runs["root"].glob(".logs-*")), "a finished run left its logs folder"


def test_a_killed_run_is_marked_dead_by_the_next_run(runs: dict) -> None:
    dead = runs["root"] / f"catsdogs-{runs['dead_id']}"
    record = json.loads((dead / "run.json").read_text())
    assert record["status"] == "died" and record["found_dead"], record
    assert (dead / "prepare-dataset" / "task.log").read_text() == "Validating: 40%\n"
    assert f"run {runs['dead_id']} did not finish" in runs["printed"]
    assert str(dead) in runs["printed"]


def test_no_credentials_in_the_run_record_logs_or_console(runs: dict) -> None:
    run_dir = runs["run"].run_dir
    texts = {
        "run.json": (run_dir / "run.json").read_text(),
        "task.log": (run_dir / "fingerprint-source" / "task.log").read_text(),
        "console": runs["printed"] + runs["run"].summary(),
    }
    for name, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, (name, secret)
    assert "source is https://***@data.example.com" in texts["task.log"], texts["task.log"]
    dead = runs["root"] / f"catsdogs-{runs['dead_id']}" / "run.json"
    assert not any(secret in dead.read_text() for secret in SECRETS)
