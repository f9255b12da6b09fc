"""Score a trained model on the test split of a prepared dataset and write a report.

Outputs, in the evaluation folder (local, gs:// or s3://):

    evaluation.json  accuracy and its Wilson 95% interval (accuracy_ci_low, accuracy_ci_high),
                     loss, precision, recall, f1, roc_auc, confusion matrix, ROC curve,
                     plus the identity of the model and of the test split it was measured on
    confusion.png    the confusion matrix (rows = true class, columns = predicted class)
    roc.png          the ROC curve with its AUC
    report.html      one self-contained page: the figures with human labels (beside the champion's
                     with ``champion_uri``), the confusion matrix, the per-class score histogram,
                     the ROC and precision-recall curves and a gallery of the most confidently
                     wrong test images (everything embedded as base64)

The numbers come from ``metrics.py``, the page from ``report.py``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from catsdogs.components.common import errors, images, model_dir, records, storage, tracking
from catsdogs.components.common.progress import Progress
from catsdogs.components.evaluate import figures as plots
from catsdogs.components.evaluate.metrics import SCALARS, binary_metrics, score_histogram
from catsdogs.components.evaluate.record import (
    Evaluation,
    InvalidEvaluationError,
)
from catsdogs.components.evaluate.report import ChampionView, report_html

CONFUSION_FILE = "confusion.png"
ROC_FILE = "roc.png"
REPORT_FILE = "report.html"


@dataclasses.dataclass(frozen=True)
class EvaluateSettings:
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
            raise errors.SettingsError(f"batch_size must be in [1, 4096], got {self.batch_size}.")
        if not 0.0 < self.threshold < 1.0:
            raise errors.SettingsError(f"threshold must be in (0, 1), got {self.threshold}.")
        if not 0 <= self.gallery_size <= 200:
            raise errors.SettingsError(
                f"gallery_size must be in [0, 200], got {self.gallery_size}."
            )


@dataclasses.dataclass(frozen=True)
class Predictions:
    """What a model said about every test image."""

    labels: np.ndarray  # int, index into classes
    scores: np.ndarray  # float, P(classes[1])
    ids: list[str]
    errors: list[dict[str, Any]]  # the most confidently wrong: id, label, score, thumbnail (bytes)


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """The outcome of ``evaluate``: everything evaluation.json holds, as Python values."""

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


def predict_split(
    model: Any,
    dataset_dir: Path,
    manifest: records.Manifest,
    config: EvaluateSettings,
    split: str = "test",
) -> Predictions:
    """Run the model over one split, keeping the most confidently wrong images for the gallery.

    Its progress (``Evaluating test: n/N images, x images/s``) goes to stderr.
    """
    size = model_dir.image_size(model)
    data = records.read_split(dataset_dir, manifest, split, size, with_ids=True)
    data = data.batch(config.batch_size if size else 1).prefetch(2)
    labels: list[np.ndarray] = []
    scores: list[np.ndarray] = []
    ids: list[str] = []
    wrong: list[tuple[float, int, dict[str, Any], np.ndarray]] = []
    seen = 0
    with Progress(f"Evaluating {split}", manifest.splits[split].count) as bar:
        for batch_images, batch_labels, batch_ids in data:
            batch_scores = np.asarray(
                model(batch_images, training=False), dtype=np.float64
            ).reshape(-1)
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
            bar.update(len(batch_true))
    if not seen:
        raise errors.DatasetError(f"The {split!r} split of the dataset holds no images.")
    gallery = [
        dict(r, confidence=c, thumbnail=images.thumbnail_jpeg(img)) for c, _, r, img in wrong
    ]
    return Predictions(np.concatenate(labels), np.concatenate(scores), ids, gallery)


def evaluate(
    model_uri: str,
    data: str | records.Dataset,
    output_uri: str,
    config: EvaluateSettings | None = None,
    report_path: str | None = None,
    champion_uri: str = "",
    track: bool = True,
) -> EvaluationResult:
    """Score ``MODEL_DIR`` on the test split of ``DATASET`` and write metrics, figures and report.

    Args:
        model_uri: Model folder (local, gs:// or s3://) with model.keras.
        data: Prepared dataset (local, gs:// or s3://) with manifest.json, or that dataset
            already opened (its manifest is not read again).
        output_uri: Evaluation folder (local, gs:// or s3://) to write into.
        config: Scoring settings.
        report_path: Also write report.html here (the KFP HTML artifact's file).
        champion_uri: A champion location: the report shows the champion's recorded figures
            beside this model's (nothing is promoted here).
        track: Log to MLflow when a tracking server is set (``common.tracking``).

    Raises:
        OutputConflictError: ``output_uri`` holds the evaluation of another model or test split.
    """
    config = config or EvaluateSettings()
    if not str(output_uri).strip():
        raise errors.SettingsError(
            f"The output location is empty ({output_uri!r}). Pass --output a folder or "
            "gs:// or s3://bucket/prefix to write the evaluation to."
        )
    storage.check_folder(output_uri, "--output")
    dataset = data if isinstance(data, records.Dataset) else records.Dataset.open(data)
    data_uri, manifest = dataset.uri, dataset.manifest
    classes = list(manifest.classes)  # always records.CLASSES: Manifest refuses any other
    model_uri = model_dir.resolve(model_uri).folder
    with model_dir.local_model_file(model_uri) as model_file:
        model_sha256 = records.sha256_file(model_file)
        model = model_dir.load_model_file(model_file, model_uri)
    split_id = manifest.identity(("test",))
    _check_output_free(output_uri, model_sha256, split_id)
    with records.local_dataset(dataset, ("test",)) as (dataset_dir, manifest):
        predictions = predict_split(model, dataset_dir, manifest, config)
    metrics = binary_metrics(predictions.labels, predictions.scores, config.threshold)
    metrics.update(
        classes=classes,
        positive_class=classes[1],
        test_count=len(predictions.labels),
        test_per_class={c: int(np.sum(predictions.labels == i)) for i, c in enumerate(classes)},
        score_histogram=score_histogram(predictions.labels, predictions.scores, classes),
        model=str(model_uri),
        model_sha256=model_sha256,
        dataset=str(data_uri),
        source_fingerprint=manifest.source_fingerprint,
        test_split_sha256=split_id,
        evaluated_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        most_confident_errors=[
            {k: e[k] for k in ("id", "label", "score", "confidence")} for e in predictions.errors
        ],
    )
    champion = champion_view(champion_uri, model_sha256, split_id) if champion_uri else None
    against = (champion.metrics, champion.label) if champion else (None, "")
    figures = {
        "confusion": plots.plot_confusion(metrics),
        "roc": plots.plot_roc(metrics, *against),
        "precision_recall": plots.plot_precision_recall(metrics, *against),
        "scores": plots.plot_score_histogram(metrics, *against),
    }
    with storage.output_dir(output_uri) as out:
        (out / CONFUSION_FILE).write_bytes(figures["confusion"])
        (out / ROC_FILE).write_bytes(figures["roc"])
        page = report_html(metrics, figures, predictions.errors, champion)
        (out / REPORT_FILE).write_text(page, encoding="utf-8")
    # evaluation.json last (after the upload, on gs://): a folder with it holds a whole evaluation.
    storage.write_text(
        storage.join(output_uri, model_dir.EVALUATION_FILE),
        json.dumps(metrics, indent=2, sort_keys=True),
    )
    if report_path:
        storage.write_text(report_path, page)
    result = EvaluationResult(metrics=metrics, output=str(output_uri))
    if track:
        _track(result, config)
    return result


def _track(result: EvaluationResult, config: EvaluateSettings) -> None:
    """Log the evaluation to MLflow: scalars (with the interval), identity tags, the report."""
    with tracking.task_run("evaluate", tags={"catsdogs.task": "evaluate"}) as run:
        run.log_params(dataclasses.asdict(config), prefix="evaluate.")
        run.log_metrics(result.scalars)
        run.set_tags(
            {
                f"catsdogs.{key}": result.metrics[key]
                for key in ("model", "model_sha256", "dataset", "test_split_sha256")
            }
        )
        files = (REPORT_FILE, CONFUSION_FILE, ROC_FILE, model_dir.EVALUATION_FILE)
        run.log_folder(result.output, "evaluation", only=files)


def champion_view(champion_uri: str, model_sha256: str, split_id: str) -> ChampionView | None:
    """The champion's recorded evaluation, to show beside a model's (None: no champion yet).

    Its figures compare only when it was measured on the same test split; otherwise the view says
    so (``catsdogs promote`` re-measures it on this split before deciding).
    """
    from catsdogs.components.promote import champion

    record = champion.read_pointer(champion_uri).record
    if not record:
        return None
    label = f"champion v{record.version:04d}"
    try:
        evaluation = Evaluation.open_if_present(storage.join(champion_uri, record.path))
    except InvalidEvaluationError:
        return None
    if evaluation is None or "confusion_matrix" not in evaluation.values:
        return None
    recorded = evaluation.values
    note = ""
    if record.model_sha256 == model_sha256:
        label += " (this model)"
    if evaluation.test_split_sha256 != split_id:
        note = (
            f"The {label} was measured on another test split, so its figures do not compare "
            "directly; the champion gate re-measures it on this split before it decides."
        )
    return ChampionView(recorded, label, note)


def _check_output_free(output_uri: str, model_sha256: str, split_id: str) -> None:
    """Refuse to overwrite the evaluation of another model or test split (rerunning is fine)."""
    try:
        previous = Evaluation.open_if_present(output_uri)
    except InvalidEvaluationError:
        previous = Evaluation(accuracy=math.nan)  # unreadable: not this model's evaluation
    if previous is None:
        return
    if previous.model_sha256 != model_sha256 or previous.test_split_sha256 != split_id:
        raise errors.OutputConflictError(
            f"{output_uri} already holds the evaluation of another model or test split "
            f"({previous.model or '?'}); choose another --output or delete it first."
        )


def load_evaluation(evaluation_uri: str) -> Evaluation:
    """``Evaluation.open``: read ``EVAL_DIR/evaluation.json`` written by ``evaluate``.

    Raises:
        EvaluationError: The folder has no evaluation.json.
        InvalidEvaluationError: evaluation.json cannot be parsed (the message names it).
    """
    return Evaluation.open(evaluation_uri)
