"""KFP wrapper: ``evaluate`` (score a trained model on the test split)."""

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
        evaluation: Folder receiving evaluation.json, confusion.png, roc.png and report.html.
        metrics: Scalar metrics for the KFP UI.
        classification: Confusion matrix and ROC curve for the KFP UI.
        report: The self-contained HTML report.
    """
    from catsdogs.components.common import quiet
    from catsdogs.components.evaluate import core
    from catsdogs.components.evaluate.metrics import thin_roc

    quiet.install()
    result = core.evaluate(model.path, data.path, evaluation.path, report_path=report.path)
    for name, value in result.scalars.items():
        metrics.log_metric(name, value)
    classification.log_confusion_matrix(result.classes, result.confusion_matrix)
    roc = thin_roc(result.roc)
    classification.log_roc_curve(roc["fpr"], roc["tpr"], roc["thresholds"])
    return result.scalars["accuracy"]
