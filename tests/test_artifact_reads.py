"""How often each step of a ``catsdogs run`` reads ``manifest.json``: at most once.

Every task of a ``kfp.local`` run is a subprocess of this Python. A ``sitecustomize`` put first on
``PYTHONPATH`` adds an audit hook (``sys.addaudithook``, the ``open`` event that every file open
raises) to each of them, which logs every open of a ``manifest.json`` for reading with the task's
process id; the reads of one process are the reads of one step.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest
from catsdogs.cli.app import app
from typer.testing import CliRunner

from tests.test_run_local import write_source

HOOK = """
import os, sys

_LOG = os.environ.get("CATSDOGS_TEST_OPEN_LOG")


def _hook(event, args):
    if event == "open" and _LOG and str(args[0]).endswith("manifest.json"):
        mode = str(args[1] or "r")
        if not any(flag in mode for flag in "wax+"):
            argv = sys.argv
            flag = "--function_to_execute"
            task = argv[argv.index(flag) + 1] if flag in argv[:-1] else " ".join(argv)[:80]
            with open(_LOG, "a") as log:  # an open of the log, not of a manifest
                log.write(f"{os.getpid()} {task} {args[0]}\\n")


if _LOG:
    sys.addaudithook(_hook)
"""


@pytest.mark.slow
def test_each_step_of_a_run_reads_the_manifest_at_most_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(HOOK)
    log = tmp_path / "opens.log"
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")])
    )
    monkeypatch.setenv("CATSDOGS_TEST_OPEN_LOG", str(log))
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--source",
            str(write_source(tmp_path / "raw")),
            "--output",
            str(tmp_path / "out"),
            "--trainers",
            "both",
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
            str(tmp_path / "champion"),
            "--checkpoint-root",
            str(tmp_path / "checkpoints"),
        ],
    )
    assert result.exit_code == 0, result.output
    per_step = collections.Counter(line.split()[0] for line in log.read_text().splitlines())
    print(f"manifest.json reads per step process: {sorted(per_step.values())}")
    # prepare (reuse check), both trainers, both evaluations, render and promote read it.
    assert len(per_step) >= 6, per_step
    assert max(per_step.values()) == 1, log.read_text()
