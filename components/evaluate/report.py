"""The evaluation report: one self-contained HTML page that says how good the model is.

It answers, in this order: how accurate is it (with its 95% interval), compared with the champion
when there is one; what "positive" means (the second class, dog: precision, recall and the curves
are about finding dogs); where it goes wrong (confusion matrix, ROC and precision-recall curves,
the scores of each true class); and which test photos it got most confidently wrong.
"""

from __future__ import annotations

import dataclasses
import html
from typing import Any

from catsdogs.components.common.reports import data_uri, html_page
from catsdogs.components.evaluate.figures import precision_recall

STYLE = """.gallery figure{width:150px} .gallery img{border-radius:4px}
.delta-good{color:var(--good)} .delta-bad{color:var(--bad)}
.note{background:#fff8c5;border:1px solid #d4a72c;border-radius:6px;padding:.5em .9em}"""


@dataclasses.dataclass(frozen=True)
class ChampionView:
    """The champion's evaluation, to show beside the model's.

    Attributes:
        metrics: The champion's evaluation.json.
        label: How the page names it (e.g. ``champion v0003``).
        note: Why its figures may not compare (another test split), or "".
    """

    metrics: dict[str, Any]
    label: str
    note: str = ""


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def rows(metrics: dict[str, Any]) -> list[tuple[str, str, float | None, str]]:
    """``(label, shown value, raw value for a difference, 'higher'|'lower' is better)``."""
    positive = metrics["positive_class"]
    low, high = metrics.get("accuracy_ci_low"), metrics.get("accuracy_ci_high")
    interval = f"{_pct(low)} to {_pct(high)}" if low is not None and high is not None else "n/a"
    average = precision_recall(metrics)[2] if metrics.get("roc_curve") else None
    return [
        ("Accuracy", _pct(metrics["accuracy"]), metrics["accuracy"], "higher"),
        ("95% interval of the accuracy (Wilson)", interval, None, ""),
        (f"Precision for {positive} (of the photos called {positive}, share right)",
         _pct(metrics["precision"]), metrics["precision"], "higher"),
        (f"Recall for {positive} (of the {positive}s, share found)",
         _pct(metrics["recall"]), metrics["recall"], "higher"),
        (f"F1 for {positive}", _num(metrics["f1"]), metrics["f1"], "higher"),
        ("ROC AUC", _num(metrics["roc_auc"]), metrics["roc_auc"], "higher"),
        (f"Average precision for {positive}", _num(average), average, "higher"),
        ("Loss (binary cross-entropy)", _num(metrics["loss"]), metrics["loss"], "lower"),
        ("Test photos", str(metrics["test_count"]), None, ""),
    ]  # fmt: skip


def _difference(mine: float | None, theirs: float | None, better: str, percent: bool) -> str:
    if mine is None or theirs is None or not better:
        return ""
    delta = mine - theirs
    if abs(delta) < 5e-4:
        return "<td class=num>same</td>"
    good = (delta > 0) == (better == "higher")
    text = f"{100 * delta:+.1f} points" if percent else f"{delta:+.3f}"
    return f"<td class='num {'delta-good' if good else 'delta-bad'}'>{text}</td>"


def figures_table(metrics: dict[str, Any], champion: ChampionView | None) -> str:
    """The figures with human labels; with a champion, its column and the difference."""
    head = "<tr><th>figure</th><th>this model</th>"
    if champion:
        head += f"<th>{html.escape(champion.label)}</th><th>difference</th>"
    body = []
    theirs = rows(champion.metrics) if champion else []
    for index, (label, shown, raw, better) in enumerate(rows(metrics)):
        cells = f"<tr><th>{html.escape(label)}</th><td class=num>{shown}</td>"
        if champion:
            _, other, other_raw, _ = theirs[index]
            percent = shown.endswith("%")
            cells += f"<td class=num>{other}</td>"
            cells += _difference(raw, other_raw, better, percent) or "<td></td>"
        body.append(cells + "</tr>")
    return f"<table>{head}</tr>{''.join(body)}</table>"


def _cards(metrics: dict[str, Any]) -> str:
    positive = metrics["positive_class"]
    low, high = metrics.get("accuracy_ci_low"), metrics.get("accuracy_ci_high")
    cards = [
        ("Accuracy", _pct(metrics["accuracy"]), f"95% interval {_pct(low)} to {_pct(high)}"),
        (f"Precision ({positive})", _pct(metrics["precision"]), f"photos called {positive}"),
        (f"Recall ({positive})", _pct(metrics["recall"]), f"{positive}s found"),
        ("ROC AUC", _num(metrics["roc_auc"]), "1.0 separates the classes fully"),
    ]
    return "<div class=cards>" + "".join(
        f"<div class=card><div class=label>{html.escape(a)}</div><div class=big>{b}</div>"
        f"<div class=muted>{html.escape(c)}</div></div>"
        for a, b, c in cards
    ) + "</div>"  # fmt: skip


def _gallery(metrics: dict[str, Any], errors: list[dict[str, Any]]) -> str:
    classes, positive = metrics["classes"], metrics["positive_class"]
    if not errors:
        return "<p>No misclassified test images.</p>"
    items = "".join(
        f'<figure><img src="{data_uri(e["thumbnail"], "image/jpeg")}" alt="{html.escape(e["id"])}">'
        f"<figcaption>{html.escape(e['id'])}<br>a {html.escape(classes[e['label']])}, "
        f"P({html.escape(positive)}) = {e['score']:.3f}</figcaption></figure>"
        for e in errors
    )
    return f"<div class=gallery>{items}</div>"


def report_html(
    metrics: dict[str, Any],
    figures: dict[str, bytes],
    errors: list[dict[str, Any]],
    champion: ChampionView | None = None,
) -> str:
    """One self-contained HTML page: the figures, the pictures, the gallery of errors.

    Args:
        metrics: The evaluation (what evaluation.json holds).
        figures: PNGs by name: ``confusion``, ``roc``, ``precision_recall``, ``scores``.
        errors: The most confidently wrong images: ``id``, ``label``, ``score``, ``thumbnail``
            (JPEG bytes).
        champion: The champion's evaluation, shown beside this model's figures.
    """
    classes, positive = metrics["classes"], metrics["positive_class"]
    per_class = metrics.get("test_per_class") or {}
    counts = ", ".join(f"{per_class[c]} {html.escape(c)}s" for c in classes if c in per_class)
    threshold = metrics.get("threshold", 0.5)
    pictures = {
        name: f'<img src="{data_uri(figures[name], "image/png")}" alt="{alt}">'
        for name, alt in (
            ("confusion", "confusion matrix"),
            ("roc", "ROC curve"),
            ("precision_recall", "precision-recall curve"),
            ("scores", "score histogram per class"),
        )
        if name in figures
    }
    versus = ""
    if champion:
        versus = f"<p>Beside it: <b>{html.escape(champion.label)}</b>, the current champion.</p>"
        if champion.note:
            versus += f"<p class=note>{html.escape(champion.note)}</p>"
    model = html.escape(str(metrics["model"]))
    body = f"""<h1>Evaluation on the test split</h1>
<p class=lead>Model <code>{model}</code> on {metrics["test_count"]} test photos ({counts}).</p>
{_cards(metrics)}
<p>The positive class is <b>{html.escape(positive)}</b>: a photo is called {html.escape(positive)}
when P({html.escape(positive)}) &ge; {threshold:g}, and precision, recall, the ROC and the
precision-recall curves are about finding {html.escape(positive)}s among
{html.escape(classes[0])}s.</p>
{versus}
<h2>Figures</h2>
{figures_table(metrics, champion)}
<h2>Where it goes wrong</h2>
<figure>{pictures.get("confusion", "")}<figcaption>rows: true class; columns: the model's answer
</figcaption></figure>
<figure>{pictures.get("scores", "")}<figcaption>left of the dashed line: called
{html.escape(classes[0])}; right: called {html.escape(positive)}</figcaption></figure>
<h2>ROC and precision-recall curves</h2>
{pictures.get("roc", "")} {pictures.get("precision_recall", "")}
<h2>Most confidently wrong test photos</h2>
{_gallery(metrics, errors)}
<h2>Provenance</h2>
<table>
<tr><th>model</th><td><code>{model}</code></td></tr>
<tr><th>model sha256</th><td><code>{html.escape(str(metrics.get("model_sha256", "")))}</code></td></tr>
<tr><th>dataset</th><td><code>{html.escape(str(metrics["dataset"]))}</code></td></tr>
<tr><th>source fingerprint</th>
<td><code>{html.escape(str(metrics["source_fingerprint"]))[:16]}</code></td></tr>
<tr><th>evaluated at</th><td>{html.escape(str(metrics.get("evaluated_at", "")))}</td></tr>
</table>"""
    return html_page("Evaluation report", body, STYLE)
