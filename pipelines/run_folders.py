"""Each local run's own folder under ``<output>/kfp/``, found by its own name, and its record.

kfp.local names a run's folder ``<pipeline>-<local time to the microsecond>`` (kfp 2.17.3,
``kfp/local/executor_input_utils.py:get_local_pipeline_resource_name``, called once per run by
``kfp/local/pipeline_orchestrator.py:_run_local_pipeline_implementation``) and tells nobody: taking
"the newest folder" afterwards let two runs into one ``--output`` take the same folder (one
run's logs and run.json lost, both consoles naming the same run). So each run picks its name
first, ``<pipeline>-<UTC time>-<random>``, and kfp.local is given it for that call.

While a run goes on, its task logs are written to ``.logs-<run id>/`` beside the run folders,
with a ``run.json`` marked ``"status": "running"`` (pid, host, start) and a lock that the kernel
drops when the process ends, however it ends (``tempdirs.claim``). At the end the logs move into
the run folder with run.json marked ``succeeded`` or ``failed``. A run killed on the way cannot
do that, so the next run in the same output does it: it moves the logs into the dead run's
folder, marks its run.json ``died`` and says so on the console.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from catsdogs.components.common import tempdirs
from catsdogs.components.common.redaction import redact_record
from catsdogs.pipelines import local_console

RUN_FILE = "run.json"
LOGS_PREFIX = ".logs-"


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


@dataclasses.dataclass
class RunFolder:
    """One run's name and places.

    Attributes:
        root: ``<output>/kfp``.
        run_id: ``<UTC time>-<random>``, chosen before the run starts.
        logs: ``root/.logs-<run id>``, the task logs while the run goes on.
        name: The run folder's name once kfp.local asked for it (``<pipeline>-<run id>``).
        notes: What this run found of earlier runs that died (for the console).
    """

    root: Path
    run_id: str
    logs: Path
    name: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def path(self) -> Path:
        """The run's own folder (``root/<name>``)."""
        return self.root / (self.name or f"unknown-{self.run_id}")

    def _resource_name(self, pipeline_name: str) -> str:
        self.name = f"{pipeline_name}-{self.run_id}"
        return self.name


def new_run_id() -> str:
    """``YYYY-mm-dd-HH-MM-SS-ffffff-<6 hex>``: sorts by start time, unique across processes."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d-%H-%M-%S-%f")
    return f"{stamp}-{secrets.token_hex(3)}"


def _write_record(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    tmp.write_text(json.dumps(redact_record(record), indent=2) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def claimed(root: Path, parameters: dict[str, Any]) -> Iterator[RunFolder]:
    """Name a new run under ``root``, hold its logs folder and make kfp.local use its name.

    Runs under ``root`` that died first get their logs and a ``died`` run.json (``notes``).
    """
    from kfp.local import executor_input_utils

    notes = recover_dead(root)
    run_id = new_run_id()
    logs = root / f"{LOGS_PREFIX}{run_id}"
    logs.mkdir()
    owner = tempdirs.claim(logs)
    run = RunFolder(root, run_id, logs, notes=notes)
    record = {
        "run": run_id,
        "status": "running",
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": _now(),
        "parameters": parameters,
    }
    _write_record(logs / RUN_FILE, record)
    try:
        with mock.patch.object(
            executor_input_utils, "get_local_pipeline_resource_name", run._resource_name
        ):
            yield run
    finally:
        tempdirs.release(logs, owner)
        with contextlib.suppress(OSError):
            logs.rmdir()  # empty once ``finish`` moved the logs


def finish(run: RunFolder, status: str, extra: dict[str, Any]) -> dict[str, Path]:
    """Move the run's logs into its folder and write its run.json; returns the logs by task."""
    record = json.loads((run.logs / RUN_FILE).read_text())
    record.update({"status": status, "ended": _now(), **extra})
    run.path.mkdir(parents=True, exist_ok=True)
    _write_record(run.path / RUN_FILE, record)
    (run.logs / RUN_FILE).unlink()
    return local_console.place_logs(run.logs, run.path)


def recover_dead(root: Path) -> list[str]:
    """Give each run under ``root`` whose process is gone its logs and a ``died`` run.json.

    Returns:
        One line per dead run found, naming its folder.
    """
    notes = []
    for logs in sorted(root.glob(f"{LOGS_PREFIX}*")):
        if not logs.is_dir() or not tempdirs.is_abandoned(logs):
            continue
        run_id = logs.name[len(LOGS_PREFIX) :]
        try:
            record = json.loads((logs / RUN_FILE).read_text())
        except (OSError, ValueError):
            record = {"run": run_id}
        folders = [p for p in root.glob(f"*-{run_id}") if p.is_dir() and p != logs]
        run = RunFolder(root, run_id, logs, name=folders[0].name if folders else f"died-{run_id}")
        try:
            (logs / tempdirs.LOCK_FILE).unlink()
            (logs / RUN_FILE).write_text(json.dumps(record))
            finish(
                run,
                "died",
                {
                    "ended": None,
                    "found_dead": _now(),
                    "note": "The run ended without finishing (killed, or its machine stopped); "
                    "its task logs stop where it died.",
                },
            )
        except OSError:  # another run is recovering it at the same time
            continue
        notes.append(
            f"Note: run {run_id} did not finish (killed, or its machine stopped); its logs and "
            f'a run.json marked "died" are in {run.path}.'
        )
    return notes
