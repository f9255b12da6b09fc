"""The evaluation's figures: confusion matrix, ROC and precision-recall curves, score histograms.

Each takes an evaluation (what evaluation.json holds) and, optionally, the champion's, drawn on the
same axes in a second colour, and returns PNG bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from catsdogs.components.common.reports import figure as _figure
from catsdogs.components.common.reports import png


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


CHALLENGER_COLOR, CHAMPION_COLOR = "#0969da", "#bf5700"
CLASS_COLORS = ("#e16f24", "#0969da")  # classes[0] (cat), classes[1] (dog)


def _versus(metrics: dict[str, Any], champion: dict[str, Any] | None, label: str) -> list:
    """``(metrics, label, colour)`` of the model, then of the champion when there is one."""
    shown = [(metrics, "this model", CHALLENGER_COLOR)]
    if champion:
        shown.append((champion, label, CHAMPION_COLOR))
    return shown


def plot_roc(
    metrics: dict[str, Any], champion: dict[str, Any] | None = None, champion_label: str = ""
) -> bytes:
    """The ROC curve as a PNG, with the chance diagonal and the AUC; the champion's beside it.

    Args:
        metrics: An evaluation: ``roc_curve`` (``fpr``, ``tpr``), ``roc_auc``, ``positive_class``.
        champion: The champion's evaluation, drawn on the same axes when given.
        champion_label: Its legend label (e.g. ``champion v0003``).
    """
    figure = _figure((4.4, 4.2))
    axes = figure.subplots()
    for shown, label, color in _versus(metrics, champion, champion_label or "champion"):
        roc, auc = shown["roc_curve"], shown.get("roc_auc")
        text = f"{label} (AUC {auc:.3f})" if auc is not None else f"{label} (AUC undefined)"
        axes.plot(roc["fpr"], roc["tpr"], color=color, linewidth=2, label=text)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.set_title(f"ROC curve (positive class: {metrics['positive_class']})")
    axes.set_xlabel(
        f"false positive rate ({metrics['classes'][0]}s called {metrics['classes'][1]})"
    )
    axes.set_ylabel(f"true positive rate ({metrics['classes'][1]}s found)")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.legend(loc="lower right", fontsize=8)
    return png(figure)


def precision_recall(metrics: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, float]:
    """Precision and recall at every threshold, and the average precision, from the ROC points.

    ROC gives, at each distinct threshold, TP = tpr * positives and FP = fpr * negatives (the
    class totals are the confusion matrix's rows), so precision = TP / (TP + FP) and recall = tpr.
    Average precision is the step sum ``sum((r_i - r_(i-1)) * p_i)`` over those thresholds, as
    scikit-learn's ``average_precision_score`` defines it.
    """
    roc, matrix = metrics["roc_curve"], np.asarray(metrics["confusion_matrix"])
    negatives, positives = float(matrix[0].sum()), float(matrix[1].sum())
    tpr, fpr = np.asarray(roc["tpr"], dtype=np.float64), np.asarray(roc["fpr"], dtype=np.float64)
    true_pos, false_pos = tpr * positives, fpr * negatives
    keep = true_pos + false_pos > 0
    precision = true_pos[keep] / (true_pos[keep] + false_pos[keep])
    recall = tpr[keep]
    average = float(np.sum(np.diff(np.r_[0.0, recall]) * precision)) if positives else 0.0
    return recall, precision, average


def plot_precision_recall(
    metrics: dict[str, Any], champion: dict[str, Any] | None = None, champion_label: str = ""
) -> bytes:
    """The precision-recall curve of the positive class as a PNG, the operating point marked."""
    figure = _figure((4.4, 4.2))
    axes = figure.subplots()
    for shown, label, color in _versus(metrics, champion, champion_label or "champion"):
        recall, precision, average = precision_recall(shown)
        axes.step(
            recall,
            precision,
            where="post",
            color=color,
            linewidth=2,
            label=f"{label} (AP {average:.3f})",
        )
        axes.plot([shown["recall"]], [shown["precision"]], "o", color=color, markersize=7)
    matrix = np.asarray(metrics["confusion_matrix"])
    base = matrix[1].sum() / max(1, matrix.sum())
    axes.axhline(base, linestyle="--", color="grey", label=f"chance ({base:.2f})")
    positive = metrics["positive_class"]
    axes.set_title(f"Precision-recall (positive class: {positive})")
    axes.set_xlabel(f"recall (share of {positive}s found)")
    axes.set_ylabel(f"precision (share of '{positive}' answers right)")
    axes.set_xlim(0, 1.01)
    axes.set_ylim(0, 1.02)
    axes.legend(loc="lower left", fontsize=8)
    figure.text(
        0.99,
        0.01,
        f"dot: threshold {metrics.get('threshold', 0.5):g}",
        ha="right",
        fontsize=7,
        color="grey",
    )
    return png(figure)


def plot_score_histogram(
    metrics: dict[str, Any], champion: dict[str, Any] | None = None, champion_label: str = ""
) -> bytes:
    """P(positive class) per true class as histograms (the model's, then the champion's)."""
    shown = [(m, label) for m, label, _ in _versus(metrics, champion, champion_label or "champion")]
    shown = [(m, label) for m, label in shown if m.get("score_histogram")]
    figure = _figure((4.6 * max(1, len(shown)), 3.6))
    axes_list = np.atleast_1d(figure.subplots(1, max(1, len(shown))))
    positive = metrics["positive_class"]
    for axes, (evaluation, label) in zip(axes_list, shown, strict=False):
        histogram = evaluation["score_histogram"]
        edges = np.asarray(histogram["edges"], dtype=np.float64)
        width = np.diff(edges)
        for index, name in enumerate(evaluation["classes"]):
            counts = np.asarray(histogram["counts"][name], dtype=np.float64)
            axes.bar(
                edges[:-1],
                counts,
                width=width,
                align="edge",
                alpha=0.6,
                color=CLASS_COLORS[index % 2],
                edgecolor="white",
                label=f"true {name} ({int(counts.sum())})",
            )
        axes.axvline(
            evaluation.get("threshold", 0.5),
            color="black",
            linestyle="--",
            linewidth=1,
            label="threshold",
        )
        axes.set_xlim(0, 1)
        axes.set_xlabel(f"P({positive})")
        axes.set_ylabel("test images")
        axes.set_title(f"Scores by true class: {label}")
        axes.legend(fontsize=8, loc="upper center")
    if not shown:
        axes_list[0].text(0.5, 0.5, "no score histogram in this evaluation", ha="center")
    figure.tight_layout()
    return png(figure)
