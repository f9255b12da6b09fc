"""The ending of ``catsdogs run``: what each model scored, which won, where the reports are.

Read from the run folder that kfp.local wrote (``<output>/kfp/<run>/<task>/``): each evaluation's
``evaluation.json`` (its model folder, ``train-<trainer>[-N]``, names the trainer), pick-better's and the champion gate's
outputs, the champion pointer, the reports. The run folder also gets an ``index.html`` that links
every report, so one command opens them all.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import textwrap
from pathlib import Path
from typing import Any

from catsdogs.components.common.model_dir import METRICS_FILE
from catsdogs.components.evaluate.metrics import wilson_interval
from catsdogs.components.evaluate.record import Evaluation
from catsdogs.components.promote.record import ChampionRecord
from catsdogs.pipelines import run_page
from catsdogs.pipelines.local_console import format_seconds

INDEX_FILE = run_page.INDEX_FILE


@dataclasses.dataclass(frozen=True)
class ModelScore:
    """One trained model's test result."""

    trainer: str  # "scratch" or "transfer"
    accuracy: float
    low: float
    high: float
    count: int
    epochs: int
    evaluation_report: Path
    model_dir: Path | None = None
    evaluation: Evaluation | None = None
    metrics: dict[str, Any] = dataclasses.field(default_factory=dict)


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _output(run_dir: Path, task: str) -> Any:
    """A task's ``Output`` parameter (None when the task did not run)."""
    record = _json(run_dir / task / "executor_output.json") or {}
    return record.get("parameterValues", {}).get("Output")


def _tasks(run_dir: Path, prefix: str) -> list[Path]:
    """``prefix``, ``prefix-2``... task folders, in that order."""
    found = [p for p in run_dir.glob(f"{prefix}*") if p.is_dir()]
    return sorted(
        (p for p in found if p.name == prefix or p.name[len(prefix) + 1 :].isdigit()),
        key=lambda p: (len(p.name), p.name),
    )


def model_scores(run_dir: Path) -> list[ModelScore]:
    """Each evaluated model's score, best first."""
    scores = []
    for task in _tasks(run_dir, "evaluate"):
        evaluation = Evaluation.open_if_present(str(task / "evaluation"))
        if evaluation is None or evaluation.model is None or evaluation.test_count is None:
            continue
        model = Path(evaluation.model)
        accuracy, count = evaluation.accuracy, evaluation.test_count
        if evaluation.accuracy_ci_low is not None and evaluation.accuracy_ci_high is not None:
            low, high = evaluation.accuracy_ci_low, evaluation.accuracy_ci_high
        else:
            low, high = wilson_interval(round(accuracy * count), count) if count else (0.0, 1.0)
        metrics = _json(model / METRICS_FILE) or {}
        scores.append(
            ModelScore(
                trainer=re.sub(r"-\d+$", "", model.parent.name.removeprefix("train-")),
                accuracy=accuracy,
                low=low,
                high=high,
                count=count,
                epochs=int(metrics.get("epochs_run", 0)),
                evaluation_report=task / "evaluation" / "report.html",
                model_dir=model,
                evaluation=evaluation,
                metrics=metrics,
            )
        )
    return sorted(scores, key=lambda s: -s.accuracy)


def _html_copy(report: Path) -> Path:
    """``report`` under a ``.html`` name (a hard link beside it), so browsers render it."""
    if report.suffix == ".html":
        return report
    named = report.with_name(report.name + ".html")
    if not named.exists():
        try:
            os.link(report, named)
        except OSError:
            named.write_bytes(report.read_bytes())
    return named


def _promote_task(run_dir: Path) -> Path | None:
    return next(
        (t for t in _tasks(run_dir, "promote") if _output(run_dir, t.name) is not None), None
    )


def _champion_line(run_dir: Path, champion_uri: str, better: str) -> str:
    promote = _promote_task(run_dir)
    if not champion_uri or promote is None:
        return (
            "Champion: none set (--champion-uri DIR keeps the best model as a versioned champion)."
        )
    pointer = _pointer(champion_uri)
    held = f"v{pointer.version:04d}{_score(pointer)}" if pointer else "it"
    if _output(run_dir, promote.name):
        return f"Champion: {better} promoted; {champion_uri} now holds {held}."
    return f"Champion: {better} not promoted; the champion at {champion_uri} stays {held}."


def gate(run_dir: Path, champion_uri: str, better: str, margin: float) -> run_page.Gate:
    """What the champion gate decided, in words, for the run page."""
    promote = _promote_task(run_dir)
    if not champion_uri or promote is None:
        return run_page.Gate(
            "none", "No champion gate: the run had no --champion-uri, so nothing was promoted."
        )
    pointer = _pointer(champion_uri)
    if _output(run_dir, promote.name):
        if not pointer:
            return run_page.Gate(
                "promoted", f"Promoted: {better} is the champion at {champion_uri}."
            )
        before = pointer.previous_version
        replaced = f", replacing v{before:04d}" if before else " (the first champion)"
        return run_page.Gate(
            "promoted",
            f"Promoted: {better} is now champion v{pointer.version:04d}{replaced} at "
            f"{champion_uri}.",
        )
    version = f" v{pointer.version:04d}" if pointer else ""
    held = f"champion{version}{_score(pointer)}" if pointer else "the champion"
    return run_page.Gate(
        "kept",
        f"Not promoted: {better} did not beat {held} by more than the margin ({margin:g}); the "
        f"champion at {champion_uri} stays{version}.",
    )


def _pointer(champion_uri: str) -> ChampionRecord | None:
    """The champion record (champion.json) on any storage; None when it cannot be read."""
    from catsdogs.components.common.errors import CatsdogsError
    from catsdogs.components.promote import champion

    try:
        return champion.read_pointer(champion_uri).record
    except (CatsdogsError, OSError, ValueError):
        return None


def _score(pointer: ChampionRecord) -> str:
    return "" if pointer.score is None else f" (accuracy {pointer.score:.3f})"


def _reports(run_dir: Path, scores: list[ModelScore], better: str) -> list[tuple[str, Path]]:
    """Every report of the run, by name: quality, curves, evaluations, activations."""
    reports: list[tuple[str, Path]] = []
    quality = run_page.write_quality_page(run_dir)
    if quality:
        reports.append(("data quality", quality))
    for score in scores:
        curves = score.model_dir.parent / "curves" if score.model_dir else None
        if curves and curves.is_file():
            reports.append((f"training curves, {score.trainer}", _html_copy(curves)))
    reports += [(f"evaluation, {s.trainer}", s.evaluation_report) for s in scores]
    for task in _tasks(run_dir, "render-activations"):
        if (task / "report").is_file():
            reports.append((f"activations, {better}", _html_copy(task / "report")))
    return [(name, path) for name, path in reports if path.is_file()]


def _page_models(
    scores: list[ModelScore], reports: list[tuple[str, Path]], parameters: dict[str, Any]
) -> list[run_page.PageModel]:
    models = []
    for score in scores:
        metrics = score.metrics
        best_epoch = metrics.get("best_val_accuracy_epoch")
        models.append(
            run_page.PageModel(
                trainer=score.trainer,
                what=run_page.describe(score.trainer, parameters),
                accuracy=score.accuracy,
                low=score.low,
                high=score.high,
                count=score.count,
                epochs=score.epochs,
                best_val=metrics.get("best_val_accuracy"),
                best_epoch=int(best_epoch) if best_epoch is not None else None,
                evaluation=score.evaluation,
                reports=[
                    (name.split(",")[0], path)
                    for name, path in reports
                    if name.endswith(f", {score.trainer}")
                ],
            )
        )
    return models


def write_index(
    run_dir: Path,
    scores: list[ModelScore],
    reports: list[tuple[str, Path]],
    *,
    better: str = "",
    gate: run_page.Gate | None = None,
    seconds: dict[str, float] | None = None,
    wall_seconds: float = 0.0,
) -> Path:
    """Write ``<run>/index.html``: the winner, the scores, the gate, times, parameters, reports."""
    parameters = (_json(run_dir / "run.json") or {}).get("parameters", {})
    page = run_page.index_html(
        run_dir,
        _page_models(scores, reports, parameters),
        better or (scores[0].trainer if scores else ""),
        gate or run_page.Gate("none", "No champion gate in this run."),
        seconds or {},
        wall_seconds,
        parameters,
        reports,
    )
    index = run_dir / INDEX_FILE
    index.write_text(page, encoding="utf-8")
    return index


def summarize(
    run_dir: Path,
    seconds: dict[str, float],
    *,
    wall_seconds: float,
    champion_uri: str,
    recipe_scratch_epochs: int,
    budget_scratch_epochs: int,
) -> str:
    """The run's ending, as text (and ``<run>/index.html`` written).

    Args:
        run_dir: The run folder kfp.local wrote.
        seconds: How long each task took, by task name, in the order they ran.
        wall_seconds: How long the whole run took.
        champion_uri: The champion location the run was given ("" for none).
        recipe_scratch_epochs: The scratch CNN's full recipe (the cluster's default), for the hint
            shown when a run trained fewer epochs.
        budget_scratch_epochs: A CPU budget of scratch epochs, for the hint shown when a run left
            the scratch CNN out.
    """
    scores = model_scores(run_dir)
    better = _output(run_dir, "pick-better") or (scores[0].trainer if scores else "")
    lines = [f"Run finished in {format_seconds(wall_seconds)}: {run_dir.name}", ""]
    if scores:
        lines.append(f"Test accuracy on {scores[0].count} test photos (95% Wilson interval):")
    for score in scores:
        mark = "  <- better" if score.trainer == better and len(scores) > 1 else ""
        chance = "  not better than chance (the interval holds 0.5)" if score.low <= 0.5 else ""
        epochs = f"{score.epochs} epoch{'' if score.epochs == 1 else 's'}"
        lines.append(
            f"  {score.trainer:<9} {score.accuracy:.3f}  [{score.low:.3f}, {score.high:.3f}]"
            f"  {epochs}{mark}{chance}"
        )
        if score.trainer == "scratch" and 0 < score.epochs < recipe_scratch_epochs:
            lines.append(
                f"{'':12}{epochs} of the recipe's {recipe_scratch_epochs}, a CPU budget: "
                f"--scratch-epochs {recipe_scratch_epochs} trains it all (best on a GPU)."
            )
    if scores and not any(s.trainer == "scratch" for s in scores):
        lines.append(
            f"  No scratch CNN in this run: --trainers both --scratch-epochs {budget_scratch_epochs}"
            f" adds it (~25 s an epoch on 2 CPU cores; the recipe: {recipe_scratch_epochs})."
        )
    if scores:
        lines.append(_champion_line(run_dir, champion_uri, better))
    steps = ", ".join(f"{task} {format_seconds(s)}" for task, s in seconds.items())
    lines += textwrap.wrap(
        f"Time per step: {steps}.", width=100, subsequent_indent="  ", break_on_hyphens=False
    )
    reports = _reports(run_dir, scores, better)
    shown = [(n, p) for n, p in reports if n.startswith(("evaluation", "activations"))]
    if reports:
        lines.append("Reports:")
        width = max(len(name) for name, _ in shown or reports)
        lines += [f"  {name:<{width}}  {path.resolve().as_uri()}" for name, path in shown]
        margin = float((_json(run_dir / "run.json") or {}).get("parameters", {}).get("margin", 0))
        index = write_index(
            run_dir,
            scores,
            reports,
            better=better,
            gate=gate(run_dir, champion_uri, better, margin),
            seconds=seconds,
            wall_seconds=wall_seconds,
        )
        lines.append(f"Open them all: python3 -m webbrowser {index.resolve().as_uri()}")
    lines.append(f"Artifacts under {run_dir} (each task's log: <task>/task.log)")
    return "\n".join(lines)
