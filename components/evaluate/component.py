"""KFP wrappers: ``evaluate`` (score on the test split) and ``promote`` (the champion gate)."""

from catsdogs.components.common.config import image
from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

IMAGE = image()


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate(
    model: Input[Model],
    data: Input[Dataset],
    evaluation: Output[Artifact],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    report: Output[HTML],
) -> float:
    """Score a trained model on the test split; returns the test accuracy.

    Args:
        model: Folder with model.keras (output of a trainer).
        data: Prepared dataset (output of prepare_dataset).
        evaluation: Folder receiving metrics.json, confusion.png, roc.png and report.html.
        metrics: Scalar metrics for the KFP UI.
        classification: Confusion matrix and ROC curve for the KFP UI.
        report: The self-contained HTML report.
    """
    from catsdogs.components.evaluate import core

    result = core.evaluate(model.path, data.path, evaluation.path, report_path=report.path)
    for name, value in result.scalars.items():
        metrics.log_metric(name, value)
    classification.log_confusion_matrix(result.classes, result.confusion_matrix)
    roc = core.thin_roc(result.roc)
    classification.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
    return result.scalars["accuracy"]


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def promote(
    model: Input[Model],
    evaluation: Input[Artifact],
    data: Input[Dataset],
    champion_uri: str,
    margin: float = 0.0,
) -> bool:
    """Make the model the champion at champion_uri if it beats the current one by margin.

    Args:
        model: Folder with model.keras.
        evaluation: Output folder of evaluate for this model (metrics.json).
        data: The prepared dataset whose test split both models are compared on.
        champion_uri: Champion location (local folder or gs:// prefix).
        margin: How much higher the new accuracy must be than the champion's.
    """
    from catsdogs.components.evaluate import champion

    settings = champion.PromoteConfig(margin=margin)
    return champion.promote(model.path, evaluation.path, data.path, champion_uri, settings).promoted
