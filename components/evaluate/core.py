"""Score a trained model on the test split of a prepared dataset and write a report.

Outputs, in the evaluation folder (local or gs://):

    metrics.json    accuracy, loss, precision, recall, f1, roc_auc, confusion matrix, ROC curve,
                    plus the identity of the model and of the test split it was measured on
    confusion.png   the confusion matrix (rows = true class, columns = predicted class)
    roc.png         the ROC curve with its AUC
    report.html     one self-contained page: the numbers, both figures and a gallery of the most
                    confidently wrong test images (everything embedded as base64)

The metrics are computed here with numpy (the positive class is ``classes[1]``, "dog"), with the
usual conventions for degenerate cases: a ratio with a zero denominator is 0, and ROC AUC is
``None`` when the test split holds only one class.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import html
import io
import json
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from catsdogs.components.common import records, storage

MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
EPSILON = 1e-7  # keras.backend.epsilon(): the clip binary cross-entropy uses
SCALARS = ("accuracy", "loss", "precision", "recall", "f1", "roc_auc")


class ModelError(ValueError):
    """A model folder that is missing, incomplete or holds an unusable model."""


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """How a model is scored.

    Attributes:
        batch_size: Images per forward pass.
        threshold: P(positive class) at or above which an image is predicted positive.
        gallery_size: How many of the most confidently wrong test images the report shows.
    """

    batch_size: int = 32
    threshold: float = 0.5
    gallery_size: int = 12

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 4096:
            raise ValueError(f"batch_size must be in [1, 4096], got {self.batch_size}.")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}.")
        if not 0 <= self.gallery_size <= 200:
            raise ValueError(f"gallery_size must be in [0, 200], got {self.gallery_size}.")


@dataclasses.dataclass(frozen=True)
class Predictions:
    """What a model said about every test image."""

    labels: np.ndarray  # int, index into classes
    scores: np.ndarray  # float, P(classes[1])
    ids: list[str]
    errors: list[dict[str, Any]]  # the most confidently wrong: id, label, score, thumbnail (bytes)


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """The outcome of ``evaluate``: everything metrics.json holds, as Python values."""

    metrics: dict[str, Any]
    output: str

    @property
    def scalars(self) -> dict[str, float]:
        """The finite scalar metrics (what KFP's Metrics artifact can log)."""
        out = {}
        for name in (*SCALARS, "test_count"):
            value = self.metrics.get(name)
            if value is not None and math.isfinite(float(value)):
                out[name] = float(value)
        return out

    @property
    def classes(self) -> list[str]:
        """Class names, in the order of the confusion matrix's rows and columns."""
        return list(self.metrics["classes"])

    @property
    def confusion_matrix(self) -> list[list[int]]:
        """Rows = true class, columns = predicted class."""
        return [list(map(int, row)) for row in self.metrics["confusion_matrix"]]

    @property
    def roc(self) -> dict[str, list[float]]:
        """The ROC curve: ``fpr``, ``tpr`` and ``thresholds`` lists of equal length."""
        return dict(self.metrics["roc_curve"])


# ------------------------------------------------------------------------------- metrics


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts with rows = true class and columns = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(
        matrix, (np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1
    )
    return matrix


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False/true positive rates at every distinct score used as threshold (``score >= t``).

    The first point is (0, 0) with threshold ``max(scores) + 1`` (nothing predicted positive). A
    rate whose class is absent from ``labels`` is 0 everywhere.

    Returns:
        ``(fpr, tpr, thresholds)``, thresholds decreasing.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # Last index of each run of equal scores: the curve only moves once per distinct threshold.
    distinct = np.where(np.diff(sorted_scores))[0] if len(scores) else np.array([], dtype=int)
    ends = np.r_[distinct, len(scores) - 1] if len(scores) else np.array([], dtype=int)
    true_pos = np.cumsum(sorted_labels)[ends] if len(scores) else np.array([])
    false_pos = (ends + 1) - true_pos
    positives, negatives = int(labels.sum()), int((~labels).sum())
    tpr = np.r_[0.0, true_pos / positives if positives else np.zeros(len(ends))]
    fpr = np.r_[0.0, false_pos / negatives if negatives else np.zeros(len(ends))]
    top = float(sorted_scores[0]) + 1.0 if len(scores) else 1.0
    thresholds = np.r_[top, sorted_scores[ends]]
    return fpr.astype(np.float64), tpr.astype(np.float64), thresholds.astype(np.float64)


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (ties count one half); None when only one class is present."""
    labels = np.asarray(labels).astype(bool)
    if labels.all() or not labels.any():
        return None
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def binary_metrics(
    labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """Accuracy, loss, precision, recall, F1, ROC AUC, confusion matrix and ROC curve.

    Args:
        labels: True class per image, 0 or 1 (1 is the positive class).
        scores: P(positive class) per image.
        threshold: Predict positive when ``score >= threshold``.

    Returns:
        A JSON-ready dict. ``loss`` is the mean binary cross-entropy with probabilities clipped
        to ``[1e-7, 1 - 1e-7]`` (as Keras does); zero-denominator ratios are 0.
    """
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(
            f"labels and scores must be 1-D of equal length: {labels.shape}, {scores.shape}."
        )
    if not len(labels):
        raise ValueError("Cannot compute metrics on 0 images: the test split is empty.")
    predicted = (scores >= threshold).astype(np.int64)
    matrix = confusion_matrix(labels, predicted, 2)
    true_neg, false_pos, false_neg, true_pos = (int(v) for v in matrix.ravel())
    precision = _ratio(true_pos, true_pos + false_pos)
    recall = _ratio(true_pos, true_pos + false_neg)
    clipped = np.clip(scores, EPSILON, 1.0 - EPSILON)
    loss = -np.mean(labels * np.log(clipped) + (1 - labels) * np.log(1.0 - clipped))
    fpr, tpr, thresholds = roc_curve(labels, scores)
    return {
        "accuracy": _ratio(true_pos + true_neg, len(labels)),
        "loss": float(loss),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "roc_auc": roc_auc(labels, scores),
        "threshold": float(threshold),
        "confusion_matrix": matrix.tolist(),
        "roc_curve": {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": thresholds.tolist()},
    }


# ------------------------------------------------------------------------------- model I/O


@contextmanager
def local_model_file(model_dir: str) -> Iterator[Path]:
    """The local path of ``MODEL_DIR/model.keras`` (downloaded first when it is on gs://)."""
    uri = storage.join(model_dir, MODEL_FILE)
    if not storage.exists(uri):
        found = ""
        if storage.is_dir(model_dir):
            found = f" (it holds: {', '.join(storage.list_files(model_dir)[:5]) or 'nothing'})"
        raise ModelError(
            f"{model_dir} is not a model folder: it has no {MODEL_FILE}{found}. Point --model at "
            "the output folder of `catsdogs train-scratch` or `catsdogs train-transfer`."
        )
    if not storage.is_gcs(uri):
        yield Path(uri)
        return
    with tempfile.TemporaryDirectory(prefix="catsdogs-model-") as tmp:
        local = Path(tmp, MODEL_FILE)
        storage.download_file(uri, local)
        yield local


def load_model(model_dir: str) -> Any:
    """Load ``MODEL_DIR/model.keras`` (local or gs://) for inference, with clear errors."""
    with local_model_file(model_dir) as path:
        return load_model_file(path, model_dir)


def load_model_file(path: Path, model_dir: str) -> Any:
    """Load a local model.keras that came from ``model_dir`` and check its input and output."""
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as error:  # keras raises many types for a bad file
        first_line = str(error).splitlines()[0] if str(error) else ""
        raise ModelError(
            f"Could not load {storage.join(model_dir, MODEL_FILE)}: {type(error).__name__}: "
            f"{first_line}. Re-export the model with the trainer of this version of catsdogs."
        ) from error
    check_binary_model(model, model_dir)
    return model


def check_binary_model(model: Any, model_dir: str) -> None:
    """Models here take one RGB image and output one sigmoid unit; say so when they do not."""
    shape = tuple(model.input_shape) if not isinstance(model.input_shape, list) else None
    if shape is None or len(shape) != 4 or shape[-1] != 3:
        raise ModelError(
            f"The model in {model_dir} takes input {model.input_shape}; expected one RGB image "
            "batch (None, height, width, 3)."
        )
    if tuple(model.output_shape)[-1] != 1:
        raise ModelError(
            f"The model in {model_dir} outputs {model.output_shape}; expected one sigmoid unit "
            "(P of the second class)."
        )


def image_size(model: Any) -> tuple[int, int] | None:
    """``(height, width)`` the model takes, or None when its input accepts any size."""
    height, width = model.input_shape[1:3]
    return (int(height), int(width)) if height and width else None


def file_sha256(path: Path) -> str:
    """Hex sha256 of a local file."""
    return records.sha256_file(path)


def test_split_identity(manifest: dict[str, Any]) -> str:
    """A digest of the test split's shards: equal digests mean the very same test images."""
    digest = hashlib.sha256()
    for shard in manifest["splits"]["test"]["shards"]:
        digest.update(f"{shard['file']}:{shard['sha256']}\n".encode())
    return digest.hexdigest()


# ------------------------------------------------------------------------------- scoring


def predict_split(
    model: Any,
    dataset_dir: Path,
    manifest: dict[str, Any],
    config: EvaluateConfig,
    split: str = "test",
) -> Predictions:
    """Run the model over one split, keeping the most confidently wrong images for the gallery."""
    from catsdogs.components.common import images

    size = image_size(model)
    data = records.read_split(dataset_dir, manifest, split, size, with_ids=True)
    data = data.batch(config.batch_size if size else 1).prefetch(2)
    labels: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    ids: list[str] = []
    wrong: list[tuple[float, int, dict[str, Any], np.ndarray]] = []
    seen = 0
    for batch_images, batch_labels, batch_ids in data:
        batch_scores = np.asarray(model(batch_images, training=False), dtype=np.float64).reshape(-1)
        batch_true = batch_labels.numpy().astype(np.int64)
        labels.append(batch_true)
        scores.append(batch_scores)
        ids.extend(i.decode("utf-8") for i in batch_ids.numpy())
        predicted = (batch_scores >= config.threshold).astype(np.int64)
        for k in np.nonzero(predicted != batch_true)[0]:
            confidence = batch_scores[k] if predicted[k] == 1 else 1.0 - batch_scores[k]
            record: dict[str, Any] = {
                "id": ids[seen + k],
                "label": int(batch_true[k]),
                "score": float(batch_scores[k]),
            }
            wrong.append((float(confidence), seen + int(k), record, batch_images[k].numpy()))
        wrong.sort(key=lambda item: (-item[0], item[1]))
        del wrong[config.gallery_size :]
        seen += len(batch_true)
    if not seen:
        raise records.DatasetError(f"The {split!r} split of the dataset holds no images.")
    errors = [dict(r, confidence=c, thumbnail=images.thumbnail_jpeg(img)) for c, _, r, img in wrong]
    return Predictions(np.concatenate(labels), np.concatenate(scores), ids, errors)


def evaluate(
    model_uri: str,
    data_uri: str,
    output_uri: str,
    config: EvaluateConfig | None = None,
    report_path: str | None = None,
) -> EvaluationResult:
    """Score ``MODEL_DIR`` on the test split of ``DATASET`` and write metrics, figures and report.

    Args:
        model_uri: Model folder (local or gs://) with model.keras.
        data_uri: Prepared dataset (local or gs://) with manifest.json.
        output_uri: Evaluation folder (local or gs://) to write into.
        config: Scoring settings.
        report_path: Also write report.html here (the KFP HTML artifact's file).
    """
    config = config or EvaluateConfig()
    manifest = records.load_manifest(data_uri)
    classes = [str(c) for c in manifest["classes"]]
    if len(classes) != 2:
        raise records.DatasetError(
            f"{data_uri} has classes {classes}; evaluation supports exactly two (e.g. cat, dog)."
        )
    with local_model_file(model_uri) as model_file:
        model_sha256 = file_sha256(model_file)
        model = load_model_file(model_file, model_uri)
    _check_output_free(output_uri, model_sha256, test_split_identity(manifest))
    with records.local_dataset(data_uri, ("test",)) as (dataset_dir, manifest):
        predictions = predict_split(model, dataset_dir, manifest, config)
    metrics = binary_metrics(predictions.labels, predictions.scores, config.threshold)
    metrics.update(
        classes=classes,
        positive_class=classes[1],
        test_count=len(predictions.labels),
        test_per_class={c: int(np.sum(predictions.labels == i)) for i, c in enumerate(classes)},
        model=str(model_uri),
        model_sha256=model_sha256,
        dataset=str(data_uri),
        source_fingerprint=str(manifest.get("source_fingerprint", "")),
        test_split_sha256=test_split_identity(manifest),
        evaluated_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        most_confident_errors=[
            {k: e[k] for k in ("id", "label", "score", "confidence")} for e in predictions.errors
        ],
    )
    with storage.output_dir(output_uri) as out:
        confusion_png = plot_confusion(metrics)
        roc_png = plot_roc(metrics)
        (out / "confusion.png").write_bytes(confusion_png)
        (out / "roc.png").write_bytes(roc_png)
        page = report_html(metrics, confusion_png, roc_png, predictions.errors)
        (out / REPORT_FILE).write_text(page, encoding="utf-8")
    # metrics.json last (after the upload, on gs://): a folder with it holds a complete evaluation.
    storage.write_text(
        storage.join(output_uri, METRICS_FILE), json.dumps(metrics, indent=2, sort_keys=True)
    )
    if report_path:
        storage.write_text(report_path, page)
    return EvaluationResult(metrics=metrics, output=str(output_uri))


def _check_output_free(output_uri: str, model_sha256: str, split_id: str) -> None:
    """Refuse to overwrite the evaluation of another model or test split (rerunning is fine)."""
    uri = storage.join(output_uri, METRICS_FILE)
    if not storage.exists(uri):
        return
    try:
        previous = json.loads(storage.read_text(uri))
    except json.JSONDecodeError:
        previous = {}
    if (
        previous.get("model_sha256") != model_sha256
        or previous.get("test_split_sha256") != split_id
    ):
        raise FileExistsError(
            f"{output_uri} already holds the evaluation of another model or test split "
            f"({previous.get('model', '?')}); choose another --output or delete it first."
        )


def load_evaluation(evaluation_uri: str) -> dict[str, Any]:
    """Read ``EVAL_DIR/metrics.json`` written by ``evaluate``, with a clear error if missing."""
    uri = storage.join(evaluation_uri, METRICS_FILE)
    if not storage.exists(uri):
        raise FileNotFoundError(
            f"{evaluation_uri} has no {METRICS_FILE}; point --evaluation at the output folder of "
            "`catsdogs evaluate`."
        )
    metrics: dict[str, Any] = json.loads(storage.read_text(uri))
    return metrics


# ------------------------------------------------------------------------------- figures, report


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def plot_confusion(metrics: dict[str, Any]) -> bytes:
    """The confusion matrix as a PNG (rows = true class, columns = predicted class)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    matrix = np.asarray(metrics["confusion_matrix"])
    classes = metrics["classes"]
    figure = Figure(figsize=(4, 3.5))
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
    return _png(figure)


def plot_roc(metrics: dict[str, Any]) -> bytes:
    """The ROC curve as a PNG, with the chance diagonal and the AUC in the title."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    roc = metrics["roc_curve"]
    figure = Figure(figsize=(4, 4))
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
    return _png(figure)


def data_uri(data: bytes, mime: str) -> str:
    """A ``data:`` URI for embedding a picture in a self-contained HTML page."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def report_html(
    metrics: dict[str, Any], confusion_png: bytes, roc_png: bytes, errors: list[dict[str, Any]]
) -> str:
    """One self-contained HTML page: metrics table, both figures, the gallery of errors."""
    classes = metrics["classes"]
    rows = "".join(
        f"<tr><th>{name}</th><td>{'n/a' if metrics[name] is None else f'{metrics[name]:.4f}'}"
        "</td></tr>"
        for name in SCALARS
    )
    gallery = "".join(
        f'<figure><img src="{data_uri(e["thumbnail"], "image/jpeg")}" alt="{html.escape(e["id"])}">'
        f"<figcaption>{html.escape(e['id'])}<br>true: {html.escape(classes[e['label']])}, "
        f"P({html.escape(classes[1])}) = {e['score']:.3f}</figcaption></figure>"
        for e in errors
    )
    if not errors:
        gallery = "<p>No misclassified test images.</p>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Evaluation report</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .8em;text-align:left}}
figure{{display:inline-block;margin:.4em;text-align:center;font-size:.8em}}</style></head>
<body><h1>Evaluation on the test split</h1>
<p>Model: <code>{html.escape(str(metrics["model"]))}</code><br>
Dataset: <code>{html.escape(str(metrics["dataset"]))}</code>, {metrics["test_count"]} test images,
source fingerprint <code>{html.escape(str(metrics["source_fingerprint"]))[:16]}</code></p>
<table>{rows}</table>
<h2>Confusion matrix and ROC curve</h2>
<img src="{data_uri(confusion_png, "image/png")}" alt="confusion matrix">
<img src="{data_uri(roc_png, "image/png")}" alt="ROC curve">
<h2>Most confidently wrong test images</h2>
{gallery}
</body></html>
"""


def thin_roc(roc: dict[str, list[float]], max_points: int = 200) -> dict[str, list[float]]:
    """At most ``max_points`` evenly spaced ROC points (first and last kept), for the KFP UI."""
    count = len(roc["fpr"])
    if count <= max_points:
        return roc
    keep = np.unique(np.linspace(0, count - 1, max_points).round().astype(int))
    return {key: [roc[key][i] for i in keep] for key in ("fpr", "tpr", "thresholds")}
