"""kill -9 of a promotion at each step: the champion stays valid and the rerun just works.

A promotion runs in a child process that SIGKILLs itself right after one storage write (the
version's claim, its model, the local lock, the pointer). Then the champion must be valid (the old
one, or the new one complete), and a rerun must promote without manual clean-up, taking over a
lock the killed run held without waiting for it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from catsdogs.components.common import storage
from catsdogs.components.promote import champion
from catsdogs.components.promote import core as gate

from tests.reliability.conftest import champion_is_valid

CHILD = """
import os, signal, sys
from catsdogs.components.common import storage
from catsdogs.components.promote import core

after, model, evaluation, data, location = sys.argv[1:]
original = storage.write_bytes

def write_then_die(uri, data, **kwargs):
    original(uri, data, **kwargs)
    if str(uri).endswith("/" + after):
        os.kill(os.getpid(), signal.SIGKILL)

storage.write_bytes = write_then_die
core.promote(model, evaluation, data, location)
print("not killed")
"""

LOCAL_POINTS = ["evaluation.json", "model.keras", ".champion.lock", "champion.json"]
REMOTE_POINTS = ["evaluation.json", "model.keras", "champion.json"]  # gs:// and s3://


def _kill_during_promotion(promotable: dict, name: str, location: str, after: str) -> None:
    model, evaluation = promotable[name]
    child = subprocess.run(
        [sys.executable, "-c", CHILD, after, model, evaluation, promotable["data"], location],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr


def _check_kill_and_rerun(promotable: dict, location: str, after: str, monkeypatch) -> None:
    first_model, first_eval = promotable["first"]
    assert gate.promote(first_model, first_eval, promotable["data"], location).promoted
    _kill_during_promotion(promotable, "better", location, after)
    record = champion_is_valid(location)
    assert record["version"] in (1, 2)  # the old champion, or the new one complete
    monkeypatch.setattr(champion, "LOCK_WAIT_S", 2.0)  # a held lock would fail the rerun fast
    start = time.monotonic()
    model, evaluation = promotable["better"]
    rerun = gate.promote(model, evaluation, promotable["data"], location)
    assert time.monotonic() - start < 10
    if after == "champion.json":  # killed after the switch: the rerun finds it done
        assert not rerun.promoted and rerun.reason == "this model is already the champion"
    else:
        assert rerun.promoted, rerun
    record = champion_is_valid(location)
    assert record["model_sha256"] == gate.records.sha256_file(f"{model}/model.keras")
    assert record["previous_version"] == 1
    if not storage.is_remote(location):  # a lock file a killed holder left blocks no one
        with champion._locked(Path(location)):
            pass
    assert ".champion.lock" not in storage.list_files(location)


@pytest.mark.parametrize("after", LOCAL_POINTS)
def test_killed_local_promotion_keeps_the_champion_and_reruns(
    after: str, tmp_path, promotable: dict, monkeypatch
) -> None:
    _check_kill_and_rerun(promotable, str(tmp_path / "champion"), after, monkeypatch)


@pytest.mark.parametrize("after", REMOTE_POINTS)
def test_killed_remote_promotion_keeps_the_champion_and_reruns(
    after: str, remote_bucket: str, promotable: dict, monkeypatch
) -> None:
    _check_kill_and_rerun(promotable, f"{remote_bucket}/champion", after, monkeypatch)
