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
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from catsdogs.pipelines.pipeline import TRAINERS, PipelineOptions, build_pipeline


@dataclasses.dataclass(frozen=True)
class RunParameters:
    """The pipeline's parameters, with the same defaults as the ``@dsl.pipeline`` function."""

    source: str
    train_per_class: int = 1000
    val_per_class: int = 500
    test_per_class: int = 500
    seed: int = 1337
    trainers: str = "both"
    scratch_epochs: int = 100
    transfer_epochs: int = 30
    batch_size: int = 32
    learning_rate: float = 1e-4
    backbone: str = "vgg16"
    weights: str = "imagenet"
    transfer_mode: str = "features"
    champion_uri: str = ""
    margin: float = 0.0
    checkpoint_root: str = ""

    def __post_init__(self) -> None:
        if not self.source:
            raise ValueError("source must name a folder, archive, gs:// prefix or URL, got ''.")
        if self.trainers not in TRAINERS:
            raise ValueError(
                f"trainers must be one of {', '.join(TRAINERS)}, got {self.trainers!r}."
            )
        for name in (
            "train_per_class",
            "val_per_class",
            "test_per_class",
            "scratch_epochs",
            "transfer_epochs",
            "batch_size",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if not 0.0 < self.learning_rate < 1.0:
            raise ValueError(f"learning_rate must be in (0, 1), got {self.learning_rate}.")
        if not 0.0 <= self.margin < 1.0:
            raise ValueError(f"margin must be in [0, 1), got {self.margin}.")

    def arguments(self) -> dict[str, Any]:
        """The pipeline arguments, by parameter name."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LocalRun:
    """Where a local run put its artifacts."""

    run_dir: Path
    tasks: dict[str, list[str]]

    def summary(self) -> str:
        """One line per task: its folder and the files it wrote."""
        lines = [f"Artifacts under {self.run_dir}:"]
        for task, files in sorted(self.tasks.items()):
            shown = ", ".join(files[:6]) + (f", ... ({len(files)} files)" if len(files) > 6 else "")
            lines.append(f"  {task}: {shown}")
        return "\n".join(lines)


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
        weights=resolve(parameters.weights)
        if Path(parameters.weights).exists()
        else parameters.weights,
        champion_uri=resolve(parameters.champion_uri),
        checkpoint_root=resolve(parameters.checkpoint_root),
    )


def run_local(parameters: RunParameters, output: str | Path) -> LocalRun:
    """Run the pipeline with ``kfp.local`` and return where its artifacts are.

    Args:
        parameters: The pipeline parameters.
        output: A local folder; the run's artifacts go under ``<output>/kfp/``.

    Returns:
        The run folder and the files each task wrote.

    Raises:
        FileNotFoundError: A local source does not exist (checked before anything runs).
        RuntimeError: A task failed (the message names it; its log is above).
    """
    import warnings

    from kfp import local

    parameters = _absolute(parameters)
    if "://" not in parameters.source and not Path(parameters.source).exists():
        raise FileNotFoundError(
            f"source {parameters.source} does not exist: expected a folder of cat.<id>.jpg / "
            "dog.<id>.jpg photos (or cat/ and dog/ subfolders), an archive, a gs:// prefix or an "
            "https:// URL."
        )
    root = Path(output).resolve() / "kfp"
    root.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in root.iterdir()}
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(root),
        raise_on_error=True,
    )
    pipeline = build_pipeline(PipelineOptions(local=True))
    with warnings.catch_warnings():
        # SubprocessRunner warns that our base image is not a plain Python image; locally the
        # components run from the installed package instead, which is the point.
        warnings.filterwarnings("ignore", message=".*custom or non-Python base image")
        pipeline(**parameters.arguments())
    new = sorted(p for p in root.iterdir() if p.is_dir() and p.name not in before)
    if not new:
        raise RuntimeError(f"kfp.local finished but wrote no run folder under {root}.")
    run_dir = new[-1]
    run = LocalRun(run_dir=run_dir, tasks=_task_files(run_dir))
    (run_dir / "run.json").write_text(
        json.dumps({"parameters": parameters.arguments(), "tasks": run.tasks}, indent=2)
    )
    return run
