"""Plots, HTML pages and data URIs shared by the trainers, evaluate, render, predict and promote."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np


def png(figure: Any, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes (cropped to its content)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def data_uri(data: bytes, mime: str) -> str:
    """A ``data:`` URI for embedding a picture in a self-contained HTML page."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def html_page(title: str, body: str, style: str = "") -> str:
    """A complete UTF-8 HTML page: ``title`` (escaped), a sans-serif ``style`` and ``body`` as is."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} {style}</style></head>
<body>{body}
</body></html>
"""


def _figure(size: tuple[float, float]) -> Any:
    """A matplotlib ``Figure`` on the Agg backend (no display, no pyplot state)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def plot_confusion(metrics: dict[str, Any]) -> bytes:
    """The confusion matrix as a PNG (rows = true class, columns = predicted class).

    Args:
        metrics: An evaluation: ``confusion_matrix``, ``classes`` and ``accuracy``.
    """
    matrix = np.asarray(metrics["confusion_matrix"])
    classes = metrics["classes"]
    figure = _figure((4, 3.5))
    axes = figure.subplots()
    axes.imshow(matrix, cmap="Blues", vmin=0, vmax=max(1, int(matrix.max())))
    for (row, col), count in np.ndenumerate(matrix):
        color = "white" if count > matrix.max() / 2 else "black"
        axes.text(col, row, str(count), ha="center", va="center", color=color, fontsize=12)
    axes.set_xticks(range(len(classes)), classes)
    axes.set_yticks(range(len(classes)), classes)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"Confusion matrix (accuracy {metrics['accuracy']:.3f})")
    return png(figure)


def plot_roc(metrics: dict[str, Any]) -> bytes:
    """The ROC curve as a PNG, with the chance diagonal and the AUC in the title.

    Args:
        metrics: An evaluation: ``roc_curve`` (``fpr``, ``tpr``), ``roc_auc``, ``positive_class``.
    """
    roc = metrics["roc_curve"]
    figure = _figure((4, 4))
    axes = figure.subplots()
    axes.plot(roc["fpr"], roc["tpr"], label=f"P({metrics['positive_class']})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    auc = metrics["roc_auc"]
    axes.set_title(f"ROC (AUC {auc:.3f})" if auc is not None else "ROC (AUC undefined: one class)")
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.legend(loc="lower right")
    return png(figure)


def plot_curves(history: dict[str, list[float]], title: str = "") -> bytes:
    """PNG of training vs validation accuracy and loss, as the seed plots them ('bo' vs 'b')."""
    figure = _figure((11, 4.2))
    axes = figure.subplots(1, 2)
    for axis, metric in zip(axes, ("accuracy", "loss"), strict=True):
        train, val = history.get(metric, []), history.get(f"val_{metric}", [])
        epochs = range(1, max(len(train), len(val)) + 1)
        if train:
            axis.plot(epochs[: len(train)], train, "bo", label=f"Training {metric}")
        if val:
            axis.plot(epochs[: len(val)], val, "b", label=f"Validation {metric}")
        axis.set_title(f"Training and validation {metric}")
        axis.set_xlabel("Epoch")
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return png(figure)


def curves_html(curves_png: bytes, metrics: dict[str, Any], title: str = "Training curves") -> str:
    """A self-contained HTML page: the training curves (a PNG) and a table of the figures."""
    rows = "\n".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in sorted(metrics.items())
    )
    body = (
        f"<h2>{html.escape(title)}</h2><img alt='training curves' "
        f"src='{data_uri(curves_png, 'image/png')}'/><table>{rows}</table>"
    )
    return html_page(title, body, style="td{padding:2px 12px}")


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
