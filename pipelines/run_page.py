"""The run page, ``<run>/index.html``: what ``catsdogs run`` produced, on one page.

It answers the questions in the order a user asks them: which model won and how good it is (test
accuracy with its 95% interval, drawn), whether it became the champion, what the data was, how
long each step took, which parameters the run had, and where each report is. It uses the same
look as the evaluation report (``components/common/reports.STYLE``) and links, never embeds, the
other reports, so it stays small.
"""

from __future__ import annotations

import dataclasses
import html
import json
from pathlib import Path
from typing import Any

from catsdogs.components.common import records
from catsdogs.components.common.reports import html_page, markdown_html
from catsdogs.components.evaluate.record import Evaluation
from catsdogs.pipelines.local_console import format_seconds

INDEX_FILE = "index.html"
QUALITY_PAGE = "quality_report.html"

STYLE = """.verdict{border-left:6px solid var(--good);background:#f0fff4;padding:.8em 1.2em;
border-radius:6px;margin:1em 0;font-size:1.1em} .verdict.kept{border-color:#bf8700;
background:#fff8e6} .verdict.none{border-color:var(--line);background:var(--soft)}
.bar{background:var(--accent);height:.9em;border-radius:2px;display:inline-block}
td.bars{width:40%} table.params td,table.params th{font-size:.9em;padding:.25em .6em}
ul.reports li{margin:.25em 0}"""


@dataclasses.dataclass(frozen=True)
class Gate:
    """What the champion gate did in this run."""

    state: str  # "promoted", "kept" or "none"
    text: str


@dataclasses.dataclass(frozen=True)
class PageModel:
    """One trained model as the page shows it."""

    trainer: str
    what: str
    accuracy: float
    low: float
    high: float
    count: int
    epochs: int
    best_val: float | None
    best_epoch: int | None
    evaluation: Evaluation | None
    reports: list[tuple[str, Path]]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def describe(trainer: str, parameters: dict[str, Any]) -> str:
    """What a trainer trained, in words, from the run's parameters."""
    if trainer == "scratch":
        return (
            f"{parameters.get('scratch_architecture', 'seed')} CNN from scratch, "
            f"{parameters.get('scratch_augmentation', 'seed')} augmentation"
        )
    if trainer == "transfer":
        return (
            f"{parameters.get('backbone', 'vgg16')} ({parameters.get('transfer_mode', 'features')}"
            " mode), ImageNet weights"
        )
    return trainer


def interval_svg(accuracy: float, low: float, high: float, floor: float) -> str:
    """The accuracy and its interval on a ``floor``..100% scale, the 50% chance line marked."""
    width, height, band = 260, 34, 22

    def x(value: float) -> float:
        return 10 + (width - 20) * (value - floor) / (1 - floor)

    ticks = "".join(
        f'<text x="{x(tick):.1f}" y="{height - 1}" font-size="9" fill="#59636e" '
        f'text-anchor="middle">{100 * tick:.0f}%</text>'
        for tick in sorted({floor, 0.25, 0.5, 0.75, 1.0})
        if tick >= floor
    )

    chance = (
        f'<line x1="{x(0.5):.1f}" y1="2" x2="{x(0.5):.1f}" y2="{band - 2}" stroke="#cf222e" '
        'stroke-dasharray="3,2"><title>chance: 50%</title></line>'
        if floor <= 0.5
        else ""
    )
    return (
        f'<svg width="{width}" height="{height}" role="img" aria-label="{_pct(accuracy)} '
        f'({_pct(low)} to {_pct(high)})"><rect x="10" y="{band / 2 - 1}" width="{width - 20}" '
        f'height="2" fill="#d1d9e0"/>{chance}<rect x="{x(low):.1f}" y="5" '
        f'width="{max(2.0, x(high) - x(low)):.1f}" height="{band - 10}" rx="3" '
        f'fill="#0969da" opacity=".35"/><circle cx="{x(accuracy):.1f}" cy="{band / 2}" r="5" '
        f'fill="#0969da"/>{ticks}</svg>'
    )


def _link(run_dir: Path, name: str, path: Path) -> str:
    relative = html.escape(str(path.relative_to(run_dir)))
    return f'<a href="{relative}">{html.escape(name)}</a>'


def _models_table(run_dir: Path, models: list[PageModel], better: str) -> str:
    floor = 0.0 if any(m.low < 0.5 for m in models) else 0.5
    rows = []
    for model in models:
        best = (
            f"{_pct(model.best_val)} (epoch {model.best_epoch})"
            if model.best_val is not None
            else "n/a"
        )
        links = ", ".join(_link(run_dir, name, path) for name, path in model.reports)
        evaluation = model.evaluation
        rows.append(
            f"<tr class='{'winner' if model.trainer == better else ''}'>"
            f"<td><b>{html.escape(model.trainer)}</b>{' (winner)' if model.trainer == better else ''}"
            f"<br><span class=muted>{html.escape(model.what)}</span></td>"
            f"<td class=num><b>{_pct(model.accuracy)}</b><br>"
            f"<span class=muted>{_pct(model.low)} to {_pct(model.high)}</span></td>"
            f"<td>{interval_svg(model.accuracy, model.low, model.high, floor)}</td>"
            f"<td class=num>{_pct(evaluation and evaluation.metric('precision'))} / "
            f"{_pct(evaluation and evaluation.metric('recall'))}</td>"
            f"<td class=num>{best}</td><td class=num>{model.epochs}</td><td>{links}</td></tr>"
        )
    positive = html.escape(records.CLASSES[1])
    return (
        "<table><tr><th>model</th><th>test accuracy<br>(95% interval)</th>"
        "<th>accuracy and interval</th><th>precision / recall<br>"
        f"({positive})</th><th>best validation<br>accuracy</th><th>epochs</th><th>reports</th>"
        f"</tr>{''.join(rows)}</table>"
    )


def _times_table(seconds: dict[str, float], wall_seconds: float) -> str:
    longest = max(seconds.values(), default=1.0) or 1.0
    rows = "".join(
        f"<tr><td>{html.escape(task)}</td><td class=num>{format_seconds(value)}</td>"
        f"<td class=bars><span class=bar style='width:{100 * value / longest:.1f}%'></span></td>"
        "</tr>"
        for task, value in seconds.items()
    )
    return (
        f"<table><tr><th>step</th><th>time</th><th></th></tr>{rows}"
        f"<tr><th>whole run</th><th class=num>{format_seconds(wall_seconds)}</th><th></th></tr>"
        "</table>"
    )


def _data_section(run_dir: Path) -> str:
    manifest_path = run_dir / "prepare-dataset" / "dataset" / "manifest.json"
    if not manifest_path.is_file():
        return "<p>No prepared dataset in this run folder.</p>"
    manifest = json.loads(manifest_path.read_text())
    classes = manifest.get("classes", [])
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td class=num>{split.get('count', 0)}</td>"
        + "".join(f"<td class=num>{split.get('per_class', {}).get(c, 0)}</td>" for c in classes)
        + "</tr>"
        for name, split in sorted(
            manifest.get("splits", {}).items(),
            key=lambda item: (["train", "val", "test"] + [item[0]]).index(item[0]),
        )
    )
    heads = "".join(f"<th>{html.escape(c)}</th>" for c in classes)
    quarantined = len(manifest.get("quarantined", []))
    quality = run_dir / QUALITY_PAGE
    link = f' <a href="{QUALITY_PAGE}">Data-quality report</a>.' if quality.is_file() else ""
    return (
        f"<p>Source <code>{html.escape(str(manifest.get('source', '')))}</code>; "
        f"{quarantined} image{'' if quarantined == 1 else 's'} quarantined.{link}</p>"
        f"<table><tr><th>split</th><th>images</th>{heads}</tr>{rows}</table>"
    )


def _parameters_table(parameters: dict[str, Any]) -> str:
    if not parameters:
        return "<p>No run.json in this run folder.</p>"
    cells = [
        f"<th>{html.escape(name)}</th><td><code>{html.escape(str(value))}</code></td>"
        for name, value in parameters.items()
        if value not in ("", None)
    ]
    half = -(-len(cells) // 2)
    rows = "".join(
        f"<tr>{cells[i]}{cells[half + i] if half + i < len(cells) else ''}</tr>"
        for i in range(half)
    )
    unset = [name for name, value in parameters.items() if value in ("", None)]
    note = f"<p class=muted>Not set: {html.escape(', '.join(unset))}.</p>" if unset else ""
    return f"<table class=params>{rows}</table>{note}"


def write_quality_page(run_dir: Path) -> Path | None:
    """``<run>/quality_report.html``: prepare's Markdown data-quality report, rendered."""
    source = run_dir / "prepare-dataset" / "dataset" / "quality_report.md"
    if not source.is_file():
        return None
    page = run_dir / QUALITY_PAGE
    page.write_text(
        html_page("Data quality report", markdown_html(source.read_text(encoding="utf-8"))),
        encoding="utf-8",
    )
    return page


def index_html(
    run_dir: Path,
    models: list[PageModel],
    better: str,
    gate: Gate,
    seconds: dict[str, float],
    wall_seconds: float,
    parameters: dict[str, Any],
    reports: list[tuple[str, Path]],
) -> str:
    """The whole run page (see the module docstring)."""
    name = html.escape(run_dir.name)
    winner = next((m for m in models if m.trainer == better), models[0] if models else None)
    if winner is None:
        verdict = "<div class='verdict none'>No model was evaluated in this run.</div>"
    else:
        verdict = (
            f"<div class='verdict {gate.state}'><b>Winner: {html.escape(winner.trainer)}</b> "
            f"({html.escape(winner.what)}): <b>{_pct(winner.accuracy)}</b> test accuracy on "
            f"{winner.count} test photos (95% interval {_pct(winner.low)} to "
            f"{_pct(winner.high)}).<br>{html.escape(gate.text)}</div>"
        )
    links = "".join(f"<li>{_link(run_dir, label, path)}</li>" for label, path in reports)
    models_part = _models_table(run_dir, models, better) if models else ""
    body = f"""<h1>catsdogs run</h1>
<p class=muted>{name}: finished in {format_seconds(wall_seconds)}</p>
{verdict}
<h2>Models</h2>
{models_part}
<p class=muted>The interval is the 95% Wilson interval of the test accuracy: the dot is the
measured accuracy, the band where the true accuracy lies with 95% confidence. Models are compared
by test accuracy; the winner is the one the champion gate considers.</p>
<h2>Champion gate</h2>
<p>{html.escape(gate.text)}</p>
<h2>Data</h2>
{_data_section(run_dir)}
<h2>Time per step</h2>
{_times_table(seconds, wall_seconds)}
<h2>Reports</h2>
<ul class=reports>{links}</ul>
<h2>Parameters</h2>
{_parameters_table(parameters)}"""
    return html_page(f"catsdogs run {run_dir.name}", body, STYLE)
