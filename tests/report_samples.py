"""The three report pages built from small synthetic inputs, without TensorFlow.

The numbers come from the real code (``binary_metrics``, ``score_histogram``, the figures, the
page builders); only the model is replaced by a fixed set of scores, so the pages are what
``evaluate``, ``render`` and ``catsdogs run`` write, in well under a second each.
"""

from __future__ import annotations

import functools
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

CLASSES = ["cat", "dog"]


def scores(seed: int = 0, count: int = 200, skill: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """Labels (half cats, half dogs) and P(dog) scores of a model that is right most of the time."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], count // 2)
    logits = rng.normal(loc=np.where(labels == 1, skill, -skill), scale=2.0)
    return labels, 1.0 / (1.0 + np.exp(-logits))


def evaluation(seed: int = 0, skill: float = 2.5, model: str = "out/vgg16") -> dict[str, Any]:
    """An evaluation.json as ``evaluate`` writes it, for the synthetic scores."""
    from catsdogs.components.evaluate.metrics import binary_metrics, score_histogram

    labels, values = scores(seed, skill=skill)
    metrics = binary_metrics(labels, values)
    metrics.update(
        classes=CLASSES,
        positive_class="dog",
        test_count=len(labels),
        test_per_class={"cat": int((labels == 0).sum()), "dog": int((labels == 1).sum())},
        score_histogram=score_histogram(labels, values, CLASSES),
        model=model,
        model_sha256="ab" * 32,
        dataset="out/data",
        source_fingerprint="dir:0123456789abcdef",
        test_split_sha256="cd" * 32,
        evaluated_at="2026-12-04T03:00:00+00:00",
    )
    return metrics


def _jpeg(seed: int, size: int = 96) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = (rng.uniform(0, 255, (size // 8, size // 8, 3))).astype("uint8")
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((size, size)).save(buffer, format="JPEG")
    return buffer.getvalue()


def evaluation_page(with_champion: bool = True) -> str:
    """The evaluation report of the synthetic model, beside a weaker champion."""
    from catsdogs.components.evaluate import figures as plots
    from catsdogs.components.evaluate.report import ChampionView, report_html

    metrics = evaluation()
    champion = (
        ChampionView(evaluation(seed=1, skill=1.5), "champion v0003") if with_champion else None
    )
    against = (champion.metrics, champion.label) if champion else (None, "")
    figures = {
        "confusion": plots.plot_confusion(metrics),
        "roc": plots.plot_roc(metrics, *against),
        "precision_recall": plots.plot_precision_recall(metrics, *against),
        "scores": plots.plot_score_histogram(metrics, *against),
    }
    errors = [
        {"id": f"cat.{i}.jpg", "label": 0, "score": 0.9 - i / 100, "thumbnail": _jpeg(i)}
        for i in range(4)
    ]
    return report_html(metrics, figures, errors, champion)


HISTORY = {
    "accuracy": [0.55, 0.63, 0.70, 0.74, 0.78, 0.80, 0.83],
    "val_accuracy": [0.58, 0.66, 0.71, 0.75, 0.74, 0.77, 0.76],
    "loss": [0.69, 0.63, 0.57, 0.52, 0.47, 0.44, 0.40],
    "val_loss": [0.67, 0.61, 0.57, 0.53, 0.54, 0.51, 0.52],
}


@functools.cache
def curves_page() -> str:
    """The training curves page a trainer writes (its KFP HTML artifact)."""
    from catsdogs.components.common import reports

    return reports.curves_html(reports.plot_curves(HISTORY), {"epochs_run": 7}, "Transfer curves")


def fake_run(run_dir: Path, champion: Path) -> dict[str, float]:
    """A run folder as kfp.local leaves it (both trainers, transfer promoted); the step times.

    The evaluation and activation reports are stand-ins: the run page only links them.
    """
    for trainer, task, seed, skill in (
        ("scratch", "evaluate", 3, 0.8),
        ("transfer", "evaluate-2", 0, 2.5),
    ):
        model = run_dir / f"train-{trainer}" / "model"
        model.mkdir(parents=True)
        (model / "metrics.json").write_text(
            json.dumps({"epochs_run": 7, "best_val_accuracy": 0.77, "best_val_accuracy_epoch": 6})
        )
        (run_dir / f"train-{trainer}" / "curves").write_text(curves_page())
        folder = run_dir / task / "evaluation"
        folder.mkdir(parents=True)
        record = evaluation(seed, skill, model=str(model))
        (folder / "evaluation.json").write_text(json.dumps(record))
        (folder / "report.html").write_text(f"<html>evaluation of {trainer}</html>")
    (run_dir / "pick-better").mkdir()
    (run_dir / "pick-better" / "executor_output.json").write_text(
        json.dumps({"parameterValues": {"Output": "transfer"}})
    )
    (run_dir / "render-activations-2").mkdir()
    (run_dir / "render-activations-2" / "report").write_text("<html>activations</html>")
    (run_dir / "promote-2").mkdir()
    (run_dir / "promote-2" / "executor_output.json").write_text(
        json.dumps({"parameterValues": {"Output": True}})
    )
    dataset = run_dir / "prepare-dataset" / "dataset"
    dataset.mkdir(parents=True)
    splits = {
        name: {"count": 2 * n, "per_class": {"cat": n, "dog": n}, "shards": []}
        for name, n in (("test", 100), ("train", 1000), ("val", 500))
    }
    manifest = {"classes": CLASSES, "splits": splits, "quarantined": [], "source": "photos/"}
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    (dataset / "quality_report.md").write_text(
        "# Data quality report\n\n- Source: photos/\n- Valid: 3200; quarantined: 0\n\n## Splits\n\n"
        "| split | images |\n|---|---|\n| train | 2000 |\n| test | 200 |\n"
    )
    parameters = {"source": "photos/", "trainers": "both", "backbone": "vgg16", "margin": 0.0}
    parameters |= {"transfer_mode": "features", "champion_uri": str(champion), "serving_uri": ""}
    (run_dir / "run.json").write_text(json.dumps({"parameters": parameters}))
    champion.mkdir(parents=True, exist_ok=True)
    (champion / "champion.json").write_text(
        json.dumps({"version": 4, "score": 0.9, "previous_version": 3, "path": "versions/v0004"})
    )
    return {"prepare-dataset": 21.0, "train-scratch": 180.0, "train-transfer": 190.0}


def activation_page(channels: int = 512) -> str:
    """An activation page with two images, two layers each, the deep one shown as a top-k."""
    from catsdogs.components.common import images, reports
    from catsdogs.components.render_activations import core
    from catsdogs.components.render_activations.page import anchor, index_html, section_html

    rng = np.random.default_rng(0)
    config = core.RenderSettings()
    entries, embedded, toc = [], {}, []
    for number, name in enumerate(("cat.1.jpg", "dog.2.jpg"), start=1):
        folder = f"{number:02d}-{name[:-4]}"
        embedded[f"{folder}/input.png"] = _jpeg(number, 150)
        entry = [(f"{folder}/input.png", f"{name} as the model sees it")]
        for index, (size, count) in enumerate(((37, 32), (4, channels)), start=1):
            value = np.maximum(rng.normal(size=(size, size, count)), 0)
            grid, caption = core.layer_grid(f"layer{index}", value, config)
            relative = f"{folder}/layers/{index:02d}-layer{index}.png"
            embedded[relative] = images.jpeg_bytes(grid)
            entry.append((relative, caption))
        entries.append((name, "cat" if number == 1 else "dog", 0.2 * number, entry))
        toc.append((anchor(folder), name, [(anchor(r), c.split(":")[0]) for r, c in entry[1:]]))
    sections = [
        section_html(name, label, p, CLASSES, entry, embedded, toc[i][0])
        for i, (name, label, p, entry) in enumerate(entries)
    ]
    return index_html("out/vgg16", sections, reports.plot_curves(HISTORY), 3_000_000, toc)
