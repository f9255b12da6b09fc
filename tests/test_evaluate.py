"""evaluate: numpy metrics vs hand-computed values, the report, the KFP wrapper and the CLI."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import numpy as np
import pytest
from catsdogs.components.common.errors import OutputConflictError, SettingsError
from catsdogs.components.evaluate import core
from catsdogs.components.evaluate.metrics import (
    binary_metrics,
    roc_auc,
    roc_curve,
    thin_roc,
    wilson_interval,
)
from typer.testing import CliRunner

from tests.tiny_models import flat_model, nested_model, save_model_dir

LABELS = np.array([0, 0, 0, 1, 1, 1, 1, 0])
SCORES = np.array([0.1, 0.6, 0.3, 0.8, 0.4, 0.9, 0.7, 0.2])


def test_metrics_match_hand_computed_values():
    metrics = binary_metrics(LABELS, SCORES, 0.5)
    # Predictions at 0.5: [0, 1, 0, 1, 0, 1, 1, 0] -> TN 3, FP 1, FN 1, TP 3.
    assert metrics["confusion_matrix"] == [[3, 1], [1, 3]]
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    assert metrics["precision"] == pytest.approx(3 / 4)
    assert metrics["recall"] == pytest.approx(3 / 4)
    assert metrics["f1"] == pytest.approx(3 / 4)
    # 15 of the 16 (positive, negative) pairs are ordered correctly (0.4 < 0.6 is the one).
    assert metrics["roc_auc"] == pytest.approx(15 / 16)
    correct = [0.9, 0.4, 0.7, 0.8, 0.4, 0.9, 0.7, 0.8]  # probability given to the true class
    assert metrics["loss"] == pytest.approx(-sum(math.log(p) for p in correct) / 8)


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), Statistics in Medicine 17:857, table I: 81/263 -> 0.2553 to 0.3662.
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson_interval(10, 10) == (pytest.approx(0.7225, abs=1e-4), pytest.approx(1.0))
    low, high = wilson_interval(800, 1000)  # the issue's +-2.4-2.5 points at 80% of 1,000
    assert 0.024 < (high - low) / 2 < 0.025 and low < 0.8 < high
    low, high = wilson_interval(980, 1000)
    assert 0.008 < (high - low) / 2 < 0.009
    with pytest.raises(ValueError, match="got 5/4"):
        wilson_interval(5, 4)
    metrics = binary_metrics(LABELS, SCORES, 0.5)
    expected = wilson_interval(6, 8)
    assert (metrics["accuracy_ci_low"], metrics["accuracy_ci_high"]) == pytest.approx(expected)


def test_roc_curve_points_and_ties():
    fpr, tpr, thresholds = roc_curve(LABELS, SCORES)
    # Thresholds 1.9 (nothing positive), then each score in decreasing order.
    assert thresholds[0] == pytest.approx(1.9)
    assert list(thresholds[1:]) == sorted(SCORES, reverse=True)
    assert (fpr[0], tpr[0]) == (0.0, 0.0)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    # At threshold 0.6: positives 0.9, 0.8, 0.7 -> tpr 3/4; negatives 0.6 -> fpr 1/4.
    at = list(thresholds).index(0.6)
    assert (fpr[at], tpr[at]) == (0.25, 0.75)
    # A tie between a positive and a negative counts one half.
    assert roc_auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9])) == 0.875
    fpr, tpr, thresholds = roc_curve(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.2, 0.9]))
    assert len(thresholds) == 4  # 0.5 appears once


def test_degenerate_cases_do_not_crash_or_give_nan():
    one_class = binary_metrics(np.ones(4, int), np.array([0.9, 0.8, 0.2, 0.7]))
    assert one_class["roc_auc"] is None
    assert one_class["recall"] == pytest.approx(3 / 4)
    nothing_positive = binary_metrics(np.array([0, 1, 0, 1]), np.full(4, 0.1))
    assert nothing_positive["precision"] == 0.0
    assert nothing_positive["f1"] == 0.0
    assert nothing_positive["roc_auc"] == 0.5
    certain = binary_metrics(np.array([0, 1]), np.array([0.0, 1.0]))
    assert math.isfinite(certain["loss"]) and certain["loss"] < 1e-6
    json.dumps(one_class, allow_nan=False)  # strict JSON: no NaN or Infinity anywhere
    with pytest.raises(ValueError, match="empty"):
        binary_metrics(np.array([], int), np.array([]))


def test_config_rejects_bad_values():
    with pytest.raises(SettingsError, match="threshold must be in"):
        core.EvaluateSettings(threshold=1.5)
    with pytest.raises(SettingsError, match="batch_size"):
        core.EvaluateSettings(batch_size=0)


@pytest.fixture(scope="module")
def flat_dir(tmp_path_factory):
    return save_model_dir(flat_model(), tmp_path_factory.mktemp("models") / "flat")


def test_evaluate_writes_metrics_figures_and_report(tmp_path, tiny_dataset, flat_dir):
    import keras
    from catsdogs.components.common import records

    data = tiny_dataset(per_class=5, size=40)
    result = core.evaluate(
        flat_dir, data, str(tmp_path / "eval"), core.EvaluateSettings(batch_size=4)
    )
    out = tmp_path / "eval"
    metrics = json.loads((out / "evaluation.json").read_text())
    assert {"accuracy", "loss", "precision", "recall", "f1", "roc_auc"} <= set(metrics)
    assert metrics["accuracy_ci_low"] <= metrics["accuracy"] <= metrics["accuracy_ci_high"]
    assert (metrics["accuracy_ci_low"], metrics["accuracy_ci_high"]) == pytest.approx(
        wilson_interval(int(np.trace(metrics["confusion_matrix"])), 10)
    )
    assert metrics["classes"] == ["cat", "dog"]
    assert metrics["test_count"] == 10 and metrics["test_per_class"] == {"cat": 5, "dog": 5}
    assert metrics["source_fingerprint"] == "synthetic"
    assert np.sum(metrics["confusion_matrix"]) == 10
    # Independent check: the same numbers from keras' own predict over the records.
    model = keras.models.load_model(Path(flat_dir, "model.keras"))
    with records.local_dataset(data, ("test",)) as (folder, manifest):
        split = records.read_split(folder, manifest, "test", (32, 32)).batch(3)
        labels = np.concatenate([y.numpy() for _, y in split])
        scores = model.predict(split.map(lambda x, y: x), verbose=0).ravel()
    expected = binary_metrics(labels, scores)
    for name in ("accuracy", "precision", "recall", "f1"):
        assert metrics[name] == pytest.approx(expected[name]), name
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-4)
    assert metrics["confusion_matrix"] == expected["confusion_matrix"]
    # Figures and a self-contained report with the gallery of confident errors.
    assert (out / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "report.html").read_text()
    errors = 10 - int(np.trace(metrics["confusion_matrix"]))
    assert page.count("data:image/png;base64,") == 4  # confusion, scores, ROC, precision-recall
    assert page.count("data:image/jpeg;base64,") == min(errors, 12)
    assert len(metrics["most_confident_errors"]) == min(errors, 12)
    confidences = [e["confidence"] for e in metrics["most_confident_errors"]]
    assert confidences == sorted(confidences, reverse=True)
    assert result.scalars["accuracy"] == metrics["accuracy"]


def test_evaluate_with_champion_shows_the_champions_figures_beside(
    tmp_path, tiny_dataset, flat_dir
):
    from catsdogs.components.promote import core as gate

    data = tiny_dataset(per_class=5, size=40)
    settings = core.EvaluateSettings(batch_size=4)
    champion = str(tmp_path / "champion")
    core.evaluate(flat_dir, data, str(tmp_path / "alone"), settings, champion_uri=champion)
    alone = (tmp_path / "alone" / "report.html").read_text()
    assert "<th>figure</th><th>this model</th></tr>" in alone  # no champion yet: one column
    gate.promote(flat_dir, str(tmp_path / "alone"), data, champion)
    core.evaluate(flat_dir, data, str(tmp_path / "beside"), settings, champion_uri=champion)
    page = (tmp_path / "beside" / "report.html").read_text()
    assert "<th>champion v0001 (this model)</th><th>difference</th>" in page
    assert "<td class=num>same</td>" in page and "another test split" not in page
    other = tiny_dataset(per_class=4, size=40)  # another test split
    core.evaluate(flat_dir, other, str(tmp_path / "other"), settings, champion_uri=champion)
    assert "was measured on another test split" in (tmp_path / "other" / "report.html").read_text()


def test_evaluate_nested_model_on_gcs(bucket, tiny_dataset, tmp_path):
    from catsdogs.components.common import storage

    data = tiny_dataset(per_class=3, size=32, output=f"{bucket}/data")
    local_model = save_model_dir(nested_model(), tmp_path / "nested")
    storage.upload_dir(local_model, f"{bucket}/model")
    result = core.evaluate(f"{bucket}/model", data, f"{bucket}/eval")
    names = storage.list_files(f"{bucket}/eval")
    assert names == ["confusion.png", "evaluation.json", "report.html", "roc.png"]
    stored = json.loads(storage.read_text(f"{bucket}/eval/evaluation.json"))
    assert stored["test_count"] == 6 and stored["model"] == f"{bucket}/model"
    assert stored["accuracy"] == result.metrics["accuracy"]


def test_wrapper_logs_kfp_metrics(tmp_path, tiny_dataset, flat_dir):
    from catsdogs.components.evaluate.component import evaluate
    from kfp import dsl

    data = tiny_dataset(per_class=3, size=32)
    evaluation = dsl.Artifact(uri=str(tmp_path / "evaluation"), name="evaluation")
    metrics = dsl.Metrics(uri=str(tmp_path / "metrics"), name="metrics")
    classification = dsl.ClassificationMetrics(uri=str(tmp_path / "cls"), name="classification")
    report = dsl.HTML(uri=str(tmp_path / "report.html"), name="report")
    accuracy = evaluate.python_func(
        model=dsl.Model(uri=flat_dir, name="model"),
        data=dsl.Dataset(uri=data, name="data"),
        evaluation=evaluation,
        metrics=metrics,
        classification=classification,
        report=report,
    )
    stored = json.loads((tmp_path / "evaluation" / "evaluation.json").read_text())
    assert accuracy == stored["accuracy"]
    assert metrics.metadata["accuracy"] == stored["accuracy"]
    assert metrics.metadata["test_count"] == 6
    matrix = classification.metadata["confusionMatrix"]
    assert [a["displayName"] for a in matrix["annotationSpecs"]] == ["cat", "dog"]
    assert [r["row"] for r in matrix["rows"]] == stored["confusion_matrix"]
    roc = classification.metadata["confidenceMetrics"]
    assert len(roc) == len(stored["roc_curve"]["fpr"])
    assert roc[-1]["recall"] == 1.0
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()


def test_thin_roc_keeps_ends():
    roc = {k: [float(i) for i in range(1000)] for k in ("fpr", "tpr", "thresholds")}
    thin = thin_roc(roc, 50)
    assert len(thin["fpr"]) == 50 and thin["fpr"][0] == 0.0 and thin["fpr"][-1] == 999.0


def test_cli_evaluate_and_errors(tmp_path, tiny_dataset, flat_dir):
    from catsdogs.cli.app import app

    data = tiny_dataset(per_class=2, size=32)
    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "evaluate",
            "--model",
            flat_dir,
            "--data",
            data,
            "--output",
            str(tmp_path / "e"),
            "--json",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout.splitlines()[0])["test_count"] == 4
    printed = json.loads(ok.stdout.splitlines()[0])
    assert printed["accuracy_ci_low"] <= printed["accuracy"] <= printed["accuracy_ci_high"]
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    bad_model = runner.invoke(
        app, ["evaluate", "--model", str(empty), "--data", data, "--output", str(tmp_path / "x")]
    )
    assert bad_model.exit_code == 2
    assert "has no model.keras" in bad_model.stderr and "notes.txt" in bad_model.stderr
    assert len(bad_model.stderr.strip().splitlines()) == 1
    no_manifest = runner.invoke(
        app,
        ["evaluate", "--model", flat_dir, "--data", str(empty), "--output", str(tmp_path / "y")],
    )
    assert no_manifest.exit_code == 2 and "manifest.json" in no_manifest.stderr
    bad_threshold = runner.invoke(
        app,
        ["evaluate", "--model", flat_dir, "--data", data, "--output", "o", "--threshold", "2"],
    )
    assert bad_threshold.exit_code == 2 and "threshold must be in (0, 1)" in bad_threshold.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_cli_defaults_match_config():
    from catsdogs.cli import evaluate as cli

    defaults = core.EvaluateSettings()
    command = inspect.signature(cli.evaluate).parameters
    for name in ("batch_size", "threshold", "gallery_size"):
        assert command[name].default == getattr(defaults, name), name


def test_evaluate_refuses_to_overwrite_another_models_evaluation(tmp_path, tiny_dataset, flat_dir):
    data = tiny_dataset(per_class=2, size=32)
    out = str(tmp_path / "eval")
    first = core.evaluate(flat_dir, data, out)
    assert core.evaluate(flat_dir, data, out).metrics["accuracy"] == first.metrics["accuracy"]
    other = save_model_dir(nested_model(), tmp_path / "other")
    before = (tmp_path / "eval" / "evaluation.json").read_text()
    with pytest.raises(OutputConflictError, match="another model or test split"):
        core.evaluate(other, data, out)
    assert (tmp_path / "eval" / "evaluation.json").read_text() == before
