"""The report pages answer the user's questions: run page, evaluation report, activations, curves."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tests import report_samples


def test_precision_recall_from_the_roc_points_matches_a_direct_count() -> None:
    from catsdogs.components.evaluate.figures import precision_recall

    labels, scores = report_samples.scores(seed=5, count=120, skill=1.0)
    scores = np.round(scores, 2)  # ties, as real scores have
    metrics = report_samples.evaluation()
    from catsdogs.components.evaluate.metrics import binary_metrics

    metrics.update(binary_metrics(labels, scores))
    recall, precision, average = precision_recall(metrics)
    expected_p, expected_r = [], []
    for threshold in sorted(set(scores), reverse=True):
        called = scores >= threshold
        true_pos = int(np.sum(called & (labels == 1)))
        expected_p.append(true_pos / int(called.sum()))
        expected_r.append(true_pos / int((labels == 1).sum()))
    np.testing.assert_allclose(precision, expected_p)
    np.testing.assert_allclose(recall, expected_r)
    steps = np.diff(np.r_[0.0, expected_r])
    assert average == pytest.approx(float(np.sum(steps * np.asarray(expected_p))))
    perfect = report_samples.evaluation()
    perfect.update(binary_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])))
    assert precision_recall(perfect)[2] == pytest.approx(1.0)


def test_score_histogram_counts_every_image_once() -> None:
    from catsdogs.components.evaluate.metrics import score_histogram

    labels = np.array([0, 0, 0, 1, 1])
    histogram = score_histogram(labels, np.array([0.0, 0.04, 0.5, 0.97, 1.0]), ["cat", "dog"])
    assert histogram["edges"][0] == 0.0 and histogram["edges"][-1] == 1.0
    assert len(histogram["edges"]) == 21
    assert histogram["counts"]["cat"][0] == 2 and histogram["counts"]["cat"][10] == 1
    assert histogram["counts"]["dog"][-1] == 2  # 1.0 falls in the last bin
    assert sum(histogram["counts"]["cat"]) == 3 and sum(histogram["counts"]["dog"]) == 2


def test_curves_have_two_colours_whole_epoch_ticks_and_the_best_epoch_marked() -> None:
    from catsdogs.components.common import reports

    figure = reports.curves_figure(report_samples.HISTORY)
    assert reports.best_epoch(report_samples.HISTORY) == 6  # val accuracy 0.77
    for axes in figure.axes:
        train, val = axes.lines[0], axes.lines[1]
        assert train.get_color() != val.get_color()
        low, high = axes.get_xlim()
        ticks = [t for t in axes.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        marks = [line for line in axes.lines if line.get_marker() == "*"]
        assert len(marks) == 1 and list(marks[0].get_xdata()) == [6]
        assert any("best epoch 6" in text.get_text() for text in axes.get_legend().get_texts())
    one_epoch = reports.curves_figure({"accuracy": [0.5], "val_accuracy": [0.6]})
    low, high = one_epoch.axes[0].get_xlim()
    assert [t for t in one_epoch.axes[0].get_xticks() if low <= t <= high] == [1.0]


def test_evaluation_report_speaks_in_words_names_dog_and_shows_the_champion() -> None:
    page = report_samples.evaluation_page()
    assert "accuracy_ci_low" not in page and "roc_auc" not in page
    assert "95% interval of the accuracy (Wilson)" in page
    assert "The positive class is <b>dog</b>" in page
    assert "Precision for dog (of the photos called dog, share right)" in page
    assert "Recall for dog (of the dogs, share found)" in page
    for alt in ("confusion matrix", "ROC curve", "precision-recall curve", "score histogram"):
        assert f'alt="{alt}' in page, alt
    assert page.count("data:image/png;base64,") == 4
    header = re.search(r"<tr><th>figure</th>(.*?)</tr>", page)
    assert header and "champion v0003" in header.group(1) and "difference" in header.group(1)
    accuracy_row = re.search(r"<tr><th>Accuracy</th>(.*?)</tr>", page)
    assert accuracy_row and accuracy_row.group(1).count("%") == 2
    assert "points</td>" in accuracy_row.group(1)
    assert "champion" not in report_samples.evaluation_page(with_champion=False).split("<h2>")[1]


def _run(tmp_path: Path, promoted: bool = True) -> tuple[str, Path]:
    import json

    from catsdogs.pipelines.run_summary import summarize

    run_dir = tmp_path / "kfp" / "catsdogs-2026"
    seconds = report_samples.fake_run(run_dir, tmp_path / "champion")
    if not promoted:
        (run_dir / "promote-2" / "executor_output.json").write_text(
            json.dumps({"parameterValues": {"Output": False}})
        )
    text = summarize(
        run_dir,
        seconds,
        wall_seconds=400.0,
        champion_uri=str(tmp_path / "champion"),
        recipe_scratch_epochs=100,
        budget_scratch_epochs=8,
    )
    return text, run_dir


def test_run_page_has_winner_scores_gate_times_parameters_and_every_report(tmp_path) -> None:
    text, run_dir = _run(tmp_path)
    page = (run_dir / "index.html").read_text()
    assert ":root{--fg" in page  # the evaluation report's look
    verdict = re.search(r"<div class='verdict promoted'>(.*?)</div>", page, re.S)
    assert verdict and "Winner: transfer" in verdict.group(1)
    assert "champion v0004, replacing v0003" in verdict.group(1)
    for model in ("scratch", "transfer"):
        assert re.search(rf"<td><b>{model}</b>.*?\d+\.\d%</b><br><span class=muted>", page, re.S)
    assert page.count("<svg") == 2  # one interval drawing per model
    for step, shown in (("prepare-dataset", "21 s"), ("train-transfer", "3 min 10 s")):
        assert re.search(rf"<td>{step}</td><td class=num>{shown}</td>", page), step
    assert "<th>backbone</th><td><code>vgg16</code></td>" in page
    assert "Not set: serving_uri." in page
    links = re.findall(r'href="([^"#]+)"', page)
    for report in (
        "quality_report.html",
        "train-transfer/curves.html",
        "train-scratch/curves.html",
        "evaluate-2/evaluation/report.html",
        "evaluate/evaluation/report.html",
        "render-activations-2/report.html",
    ):
        assert report in links and (run_dir / report).is_file(), report
    quality = (run_dir / "quality_report.html").read_text()
    assert "<h2>Splits</h2>" in quality and "<td>2000</td>" in quality
    assert "evaluation, transfer" in text  # the console keeps its report links


def test_run_page_says_when_the_champion_was_kept(tmp_path) -> None:
    _, run_dir = _run(tmp_path, promoted=False)
    page = (run_dir / "index.html").read_text()
    assert "<div class='verdict kept'>" in page
    assert "Not promoted: transfer did not beat champion v0004 (accuracy 0.900)" in page


def test_activation_page_has_a_contents_table_whose_links_all_land() -> None:
    page = report_samples.activation_page()
    assert "<nav class=toc>" in page
    targets = re.findall(r'href="#([^"]+)"', page)
    ids = set(re.findall(r'id="([^"]+)"', page))
    assert len(targets) >= 2 + 2 * 2 + 1  # curves, 2 images, 2 layers each
    assert [t for t in targets if t not in ids] == []
    assert "layer2: 4x4, the 32 most active of its 512 channels" in page
    assert "layer1: 37x37, 32 channels" in page


def test_deep_layers_show_their_most_active_channels_numbered() -> None:
    from catsdogs.components.render_activations import core, pictures

    value = np.zeros((4, 4, 512), dtype=np.float32)
    strongest = [300, 7, 511, 42]
    for rank, channel in enumerate(strongest):
        value[..., channel] = 10.0 - rank
    value[0, 0, 100] = 0.5  # weakly active
    top = pictures.top_channels(value, 32)
    assert top[:5] == [*strongest, 100] and len(top) == 32
    grid, caption = core.layer_grid("block5_conv3", value, core.RenderSettings())
    assert "the 32 most active of its 512 channels" in caption
    # 32 cells of 64 px in 8 columns, 1-px gaps: 4 rows.
    assert grid.shape == (4 * 65 - 1, 8 * 65 - 1, 3)
    plain = pictures.channel_grid(value, 8, min_cell=64, max_cell=96, channels=top)
    unlabelled = pictures.channel_grid(value[..., top], 8, min_cell=64, max_cell=96)
    assert (plain != unlabelled).any()  # the channel numbers are drawn
    whole, caption = core.layer_grid("conv1", value[..., :64], core.RenderSettings())
    assert caption == "conv1: 4x4, 64 channels"


def test_markdown_report_is_rendered_and_escaped() -> None:
    from catsdogs.components.common.reports import markdown_html

    page = markdown_html(
        "# Report\n\n- file `<img src=x onerror=alert(1)>` \\_ok\\_ <b>\n\n## T\n\n"
        "| a | b |\n|---|---|\n| 1 | <i>2</i> |\n\ntext **bold**"
    )
    assert "<h1>Report</h1>" in page and "<h2>T</h2>" in page
    assert "<code>&lt;img src=x onerror=alert(1)&gt;</code> _ok_ &lt;b&gt;" in page
    assert "<tr><th>a</th><th>b</th></tr><tr><td>1</td><td>&lt;i&gt;2&lt;/i&gt;</td></tr>" in page
    assert "<p>text <b>bold</b></p>" in page
    assert "<img" not in page and "<i>" not in page
