"""The evaluation report: one self-contained HTML page (numbers, figures, confident errors)."""

from __future__ import annotations

import html
from typing import Any

from catsdogs.components.common.reports import data_uri, html_page
from catsdogs.components.evaluate.metrics import SCALARS

STYLE = """table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.3em .8em;text-align:left}
figure{display:inline-block;margin:.4em;text-align:center;font-size:.8em}"""


def _value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def report_html(
    metrics: dict[str, Any], confusion_png: bytes, roc_png: bytes, errors: list[dict[str, Any]]
) -> str:
    """One self-contained HTML page: metrics table, both figures, the gallery of errors.

    Args:
        metrics: The evaluation (what evaluation.json holds).
        confusion_png: The confusion matrix picture.
        roc_png: The ROC curve picture.
        errors: The most confidently wrong images: ``id``, ``label``, ``score``, ``thumbnail``
            (JPEG bytes).
    """
    classes = metrics["classes"]
    rows = "".join(f"<tr><th>{name}</th><td>{_value(metrics[name])}</td></tr>" for name in SCALARS)
    gallery = "".join(
        f'<figure><img src="{data_uri(e["thumbnail"], "image/jpeg")}" alt="{html.escape(e["id"])}">'
        f"<figcaption>{html.escape(e['id'])}<br>true: {html.escape(classes[e['label']])}, "
        f"P({html.escape(classes[1])}) = {e['score']:.3f}</figcaption></figure>"
        for e in errors
    )
    if not errors:
        gallery = "<p>No misclassified test images.</p>"
    body = f"""<h1>Evaluation on the test split</h1>
<p>Model: <code>{html.escape(str(metrics["model"]))}</code><br>
Dataset: <code>{html.escape(str(metrics["dataset"]))}</code>, {metrics["test_count"]} test images,
source fingerprint <code>{html.escape(str(metrics["source_fingerprint"]))[:16]}</code></p>
<table>{rows}</table>
<h2>Confusion matrix and ROC curve</h2>
<img src="{data_uri(confusion_png, "image/png")}" alt="confusion matrix">
<img src="{data_uri(roc_png, "image/png")}" alt="ROC curve">
<h2>Most confidently wrong test images</h2>
{gallery}"""
    return html_page("Evaluation report", body, STYLE)
