"""Run the whole pipeline on this machine with KFP's local runner (``kfp.local``).

``kfp.local.SubprocessRunner(use_venv=False)`` runs every task as a subprocess of this Python, so the
components use the installed ``catsdogs`` package, not the container image. What differs from the
cluster (kfp 2.17's local runner):

- the pipeline is built with ``PipelineOptions(local=True)``: no accelerator/CPU/memory requests,
  node selectors, tolerations or retries, and the trainers do not require a GPU (TensorFlow uses one
  if it sees one);
- tasks run one after another, never side by side;
- no caching (every run recomputes), no KFP UI, no ML Metadata: artifacts are plain files under
  ``<output>/kfp/<run>/<task>/``;
- the same graph otherwise: fingerprint, checkpoint folders, prepare, both branches,
  ``dsl.If``/``dsl.Elif``, the sub-pipelines, pick-better and the champion gate all run as on the
  cluster.

The console shows a line per task start and end and the tasks' progress lines; each task's whole
log goes to ``<task>/task.log`` beside its artifacts (``local_console``). The run ends with a
summary: test accuracy with its 95% interval per model, the winner, the champion gate, the time
per step and the reports (``run_summary``).

``runner="docker"`` runs every task in the container image instead (``kfp.local.DockerRunner``; see
``pipelines/docker_runner.py`` for how that differs from the cluster).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from catsdogs.components.common import config, hardware
from catsdogs.components.common.errors import CatsdogsError, SettingsError, SourceError
from catsdogs.components.common.redaction import redact
from catsdogs.components.prepare_dataset.settings import PrepareSettings
from catsdogs.components.promote.core import PromoteSettings
from catsdogs.components.train_scratch.core import ScratchSettings
from catsdogs.components.train_transfer.settings import TransferSettings
from catsdogs.pipelines import docker_runner, local_console, run_folders, run_summary, task_errors
from catsdogs.pipelines.options import PipelineOptions
from catsdogs.pipelines.parameters import RunParameters
from catsdogs.pipelines.pipeline import build_pipeline

# How kfp.local runs each task: a subprocess of this Python, or a container of the image.
RUNNERS = ("subprocess", "docker")

# The components' settings hold every default; the pipeline parameters name them.
_PREPARE = PrepareSettings()
_SCRATCH = ScratchSettings()
_TRANSFER = TransferSettings()
_PROMOTE = PromoteSettings()
# A CPU budget for the scratch CNN (the Makefile's SCRATCH_EPOCHS, for `make run TRAINERS=both`):
# the recipe's 100 epochs take about 40 min on 2 CPU cores; 8 take 3 to 4 and learn something
# (62.3% [59.3, 65.3] on 1,000 test photos, measured). ``catsdogs run`` and the cluster keep the
# recipe (RunParameters.scratch_epochs); `make run` leaves the scratch CNN out.
LOCAL_SCRATCH_EPOCHS = 8


class TaskFailedError(CatsdogsError, RuntimeError):
    """A task of a local run failed: with its own user error, or its last lines are above."""


# The options of `catsdogs run`: one per pipeline parameter, plus where and how it runs.
RUN_OPTIONS = {
    "--" + field.name.replace("_", "-") for field in dataclasses.fields(RunParameters)
} | {"--output", "--runner", "--image"}


@dataclasses.dataclass(frozen=True)
class LocalRun:
    """What a local run did and where it put its artifacts.

    Attributes:
        run_dir: ``<output>/kfp/<run>/``, one folder per task.
        tasks: The files each task wrote, plus its parameter outputs as ``name=value``.
        seconds: How long each task took, in the order they ran.
        wall_seconds: How long the whole run took.
        parameters: The parameters it ran with (local paths made absolute).
    """

    run_dir: Path
    tasks: dict[str, list[str]]
    seconds: dict[str, float]
    wall_seconds: float
    parameters: RunParameters

    def summary(self) -> str:
        """The ending: scores with intervals, winner, champion, time per step, report links."""
        return redact(
            run_summary.summarize(
                self.run_dir,
                self.seconds,
                wall_seconds=self.wall_seconds,
                champion_uri=self.parameters.champion_uri,
                recipe_scratch_epochs=_SCRATCH.epochs,
                budget_scratch_epochs=LOCAL_SCRATCH_EPOCHS,
            )
        )


def _task_files(run_dir: Path) -> dict[str, list[str]]:
    """Each task's files, plus its parameter outputs as ``name=value``."""
    tasks: dict[str, list[str]] = {}
    for task_dir in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        files = sorted(
            str(path.relative_to(task_dir))
            for path in task_dir.rglob("*")
            if path.is_file() and path.name != "executor_output.json"
        )
        executor_output = task_dir / "executor_output.json"
        if executor_output.is_file():
            values = json.loads(executor_output.read_text()).get("parameterValues", {})
            files = [f"{name}={value}" for name, value in sorted(values.items())] + files
        tasks[task_dir.name] = files
    return tasks


def _absolute(parameters: RunParameters) -> RunParameters:
    """Local paths made absolute, so the records (manifest, run.json) name them unambiguously."""

    def resolve(value: str) -> str:
        if not value or "://" in value or value in ("imagenet", "none"):
            return value
        return str(Path(value).expanduser().resolve())

    return dataclasses.replace(
        parameters,
        source=resolve(parameters.source),
        transfer_weights=resolve(parameters.transfer_weights)
        if Path(parameters.transfer_weights).exists()
        else parameters.transfer_weights,
        champion_uri=resolve(parameters.champion_uri),
        checkpoint_root=resolve(parameters.checkpoint_root),
    )


def cpu_budget_hint(parameters: RunParameters, runner: str = "subprocess") -> str | None:
    """A note before a local run that will train the recipe's scratch epochs without a GPU."""
    if (
        runner != "subprocess"
        or parameters.trainers == "transfer"
        or parameters.scratch_epochs <= LOCAL_SCRATCH_EPOCHS
        or hardware.has_nvidia_device()
    ):
        return None
    return (
        f"Note: no GPU here: {parameters.scratch_epochs} scratch epochs on 2 CPU cores take about "
        f"{parameters.scratch_epochs * 25 // 60} min; --scratch-epochs {LOCAL_SCRATCH_EPOCHS} "
        "takes about 3 (`make run TRAINERS=both`), --trainers transfer leaves it out (`make run`)."
    )


def run_local(
    parameters: RunParameters,
    output: str | Path,
    runner: str = "subprocess",
    image: str | None = None,
) -> LocalRun:
    """Run the pipeline with ``kfp.local`` and return where its artifacts are.

    Args:
        parameters: The pipeline parameters.
        output: A local folder; the run's artifacts go under ``<output>/kfp/``.
        runner: ``subprocess`` (the installed package) or ``docker`` (every task in the image).
        image: The image for ``docker``; default ``CATSDOGS_IMAGE`` or the project's image.

    Returns:
        The run folder and the files each task wrote.

    Raises:
        SourceError: A local source does not exist (checked before anything runs).
        TaskFailedError: A task failed (the message names it and its log file).
    """
    import warnings

    from kfp import local

    if runner not in RUNNERS:
        raise SettingsError(f"runner must be one of {', '.join(RUNNERS)}, got {runner!r}.")
    parameters = _absolute(parameters)
    if "://" not in parameters.source and not Path(parameters.source).exists():
        raise SourceError(
            f"source {parameters.source} does not exist: expected a folder of cat.<id>.jpg / "
            "dog.<id>.jpg photos (or cat/ and dog/ subfolders), an archive, a gs:// prefix or an "
            "https:// URL."
        )
    root = Path(output).resolve() / "kfp"
    root.mkdir(parents=True, exist_ok=True)
    if hint := cpu_budget_hint(parameters, runner):
        print(hint, flush=True)
    started = time.monotonic()
    failure: RuntimeError | None = None
    with contextlib.ExitStack() as stack:
        # This run's own name (kfp.local's folder) and logs folder; earlier dead runs reported.
        run = stack.enter_context(run_folders.claimed(root, parameters.arguments()))
        for note in run.notes:
            print(redact(note), flush=True)
        if runner == "docker":
            image = image or config.image()
            task_runner: Any = stack.enter_context(
                docker_runner.docker_runner(image, root, parameters)
            )
        else:
            task_runner = local.SubprocessRunner(use_venv=False)
        local.init(runner=task_runner, pipeline_root=str(root), raise_on_error=True)
        pipeline = build_pipeline(PipelineOptions(local=True))
        if runner == "docker":
            docker_runner.check_image(pipeline, image)
        with warnings.catch_warnings():
            # SubprocessRunner warns that our base image is not a plain Python image; locally the
            # components run from the installed package instead, which is the point.
            warnings.filterwarnings("ignore", message=".*custom or non-Python base image")
            with local_console.task_console(run.logs) as console:
                try:
                    pipeline(**parameters.arguments())
                except RuntimeError as error:  # kfp.local: a task failed
                    failure = error
        if failure is None and (not run.name or not run.path.is_dir()):
            raise RuntimeError(f"kfp.local wrote no run folder named {run.name!r} under {root}.")
        run_dir = run.path  # found by its own name, whatever other runs wrote meanwhile
        tasks = _task_files(run_dir) if run_dir.is_dir() else {}
        status = "failed" if failure is not None else "succeeded"
        placed = run_folders.finish(run, status, {"tasks": tasks})
    if failure is not None:
        first = local_console.plain((str(failure).splitlines() or [repr(failure)])[0])
        failed = [task for task, status in console.times.status.items() if status != "SUCCESS"]
        log = placed.get(failed[-1], run_dir / f"{failed[-1]}.log") if failed else run_dir
        user_error = console.times.errors.get(failed[-1]) if failed else None
        if user_error is not None:  # its own line ends the run, advice in run's options
            print(f"{failed[-1]} failed; its whole log: {log}", flush=True)
            raise TaskFailedError(
                task_errors.in_run_terms(failed[-1], user_error, RUN_OPTIONS)
            ) from failure
        raise TaskFailedError(f"{first.rstrip('.')}. Its whole log: {log}") from failure
    return LocalRun(
        run_dir=run_dir,
        tasks=tasks,
        seconds=dict(console.times.seconds),
        wall_seconds=time.monotonic() - started,
        parameters=parameters,
    )
