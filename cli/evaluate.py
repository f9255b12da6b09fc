"""``catsdogs evaluate``, ``promote``, ``render`` and ``predict``: what follows training."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from catsdogs.components.common import storage
from catsdogs.components.common.errors import SettingsError
from catsdogs.components.evaluate.core import EvaluateSettings
from catsdogs.components.promote.core import PromoteSettings
from catsdogs.components.render_activations.core import RenderSettings

app = typer.Typer()
_EVALUATE = EvaluateSettings()
_PROMOTE = PromoteSettings()
_RENDER = RenderSettings()

ModelOption = Annotated[
    str,
    typer.Option(
        help="Model folder (model.keras), champion location (its current version) or champion "
        "version (.../versions/v0003); local, gs:// or s3://."
    ),
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON instead of sentences.")
]


def evaluation_summary(metrics: dict[str, Any], output: str) -> list[str]:
    """What ``evaluate`` found, for people: accuracy with its interval, the rest, the report."""
    from catsdogs.components.common import storage
    from catsdogs.components.evaluate.core import REPORT_FILE

    classes = list(metrics.get("classes") or ("cat", "dog"))
    per_class = metrics.get("test_per_class") or {}
    counts = ", ".join(f"{per_class[c]} {c}" for c in classes if c in per_class)

    def figure(name: str) -> str:
        value = metrics.get(name)
        return "n/a" if value is None else f"{float(value):.3f}"

    return [
        f"Accuracy {figure('accuracy')} (95% interval {figure('accuracy_ci_low')} to "
        f"{figure('accuracy_ci_high')}) on {metrics.get('test_count')} test images ({counts}).",
        f"Positive class {classes[-1]}: precision {figure('precision')}, recall "
        f"{figure('recall')}, F1 {figure('f1')}, ROC AUC {figure('roc_auc')}.",
        f"Report: {storage.join(output, REPORT_FILE)}",
    ]


def decision_summary(decision: Any, champion: str) -> str:
    """The champion gate's decision in one sentence."""
    if decision.promoted:
        return f"Promoted: version {decision.version} is the champion at {champion} ({decision.reason})."
    stays = f"the champion stays version {decision.version}" if decision.version else "no champion"
    return f"Not promoted: {decision.reason}; {stays} at {champion}."


ThresholdOption = Annotated[float, typer.Option(help="Predict the second class at P >= this.")]


@app.command("evaluate")
def evaluate(
    model: ModelOption,
    data: Annotated[str, typer.Option(help="Prepared dataset folder or gs:// / s3:// prefix.")],
    output: Annotated[
        str,
        typer.Option(
            help="Evaluation folder or gs:// / s3:// prefix (evaluation.json, report.html)."
        ),
    ],
    champion: Annotated[
        str, typer.Option(help="Champion location: run the champion gate after evaluating.")
    ] = "",
    margin: Annotated[
        float, typer.Option(help="With --champion: promote when accuracy beats it by more.")
    ] = _PROMOTE.margin,
    batch_size: Annotated[
        int, typer.Option(help="Images per forward pass.")
    ] = _EVALUATE.batch_size,
    threshold: ThresholdOption = _EVALUATE.threshold,
    gallery_size: Annotated[
        int, typer.Option(help="Most confidently wrong test images shown in the report.")
    ] = _EVALUATE.gallery_size,
    as_json: JsonOption = False,
) -> None:
    """Score a model on the test split: evaluation.json, confusion.png, roc.png, report.html.

    Prints the accuracy with its 95% interval, the other figures and the report's path (with
    --champion, the gate's decision too); --json prints them as JSON instead.
    """
    from catsdogs.components.evaluate import core
    from catsdogs.components.promote import core as gate

    settings = EvaluateSettings(
        batch_size=batch_size, threshold=threshold, gallery_size=gallery_size
    )
    promote_settings = PromoteSettings(margin=margin)
    storage.check_output(output, "--output")
    result = core.evaluate(model, data, output, settings, champion_uri=champion)
    if as_json:
        typer.echo(json.dumps(result.scalars, sort_keys=True))
    else:
        for line in evaluation_summary(result.metrics, output):
            typer.echo(line)
    if champion:
        decision = gate.promote(model, output, data, champion, promote_settings)
        typer.echo(
            json.dumps(decision.to_dict(), sort_keys=True)
            if as_json
            else decision_summary(decision, champion)
        )


@app.command("promote")
def promote(
    model: Annotated[
        str, typer.Option(help="Model folder or gs:// / s3:// prefix with model.keras.")
    ],
    evaluation: Annotated[str, typer.Option(help="Its evaluation folder (from `evaluate`).")],
    data: Annotated[str, typer.Option(help="The prepared dataset it was evaluated on.")],
    champion: Annotated[
        str, typer.Option(help="Champion location: folder or gs:// / s3:// prefix.")
    ],
    margin: Annotated[
        float, typer.Option(help="Promote when the metric beats the champion's by more.")
    ] = _PROMOTE.margin,
    metric: Annotated[
        str, typer.Option(help="accuracy, f1, roc_auc, precision or recall.")
    ] = _PROMOTE.metric,
    retries: Annotated[
        int, typer.Option(help="Re-decisions after losing a race to a concurrent promotion.")
    ] = _PROMOTE.retries,
    as_json: JsonOption = False,
) -> None:
    """Make the model the champion if it beats the current one on the same test split.

    Prints the decision in a sentence; --json prints it as JSON instead.
    """
    from catsdogs.components.promote import core as gate

    settings = PromoteSettings(margin=margin, metric=metric, retries=retries)
    decision = gate.promote(model, evaluation, data, champion, settings)
    if as_json:
        typer.echo(json.dumps(decision.to_dict(), sort_keys=True))
    else:
        typer.echo(decision_summary(decision, champion))


@app.command("render")
def render(
    model: ModelOption,
    output: Annotated[
        str, typer.Option(help="Folder or gs:// / s3:// prefix for the PNGs and index.html.")
    ],
    image: Annotated[
        list[str] | None, typer.Option(help="Image file (local, gs:// or s3://); repeat for more.")
    ] = None,
    data: Annotated[
        str, typer.Option(help="Prepared dataset: its test images are used when no --image.")
    ] = "",
    layer: Annotated[
        str, typer.Option(help="Layer whose channels are enlarged (default: first conv).")
    ] = _RENDER.layer,
    channel: Annotated[
        list[int] | None, typer.Option(help="Channel of --layer to enlarge; repeat (default 4, 7).")
    ] = None,
    images_per_class: Annotated[
        int, typer.Option(help="Test images per class when no --image.")
    ] = _RENDER.images_per_class,
) -> None:
    """Activation grids of every conv/pooling layer, chosen channels, Grad-CAM and curves."""
    from catsdogs.components.render_activations import core

    settings = RenderSettings(
        layer=layer, channels=tuple(channel or ()), images_per_class=images_per_class
    )
    storage.check_output(output, "--output")
    result = core.render(model, output, list(image or []), data, settings)
    for item in result.predictions:
        typer.echo(f"{item['label']}\t{item['p']:.4f}\t{item['image']}")
    for failure in result.failed:
        typer.echo(f"ERROR\t{failure['image']}\t{failure['error']}", err=True)
    typer.echo(f"Wrote {len(result.files)} files; open {result.output}/index.html")
    if result.failed:
        typer.echo(
            f"{len(result.failed)} image(s) could not be read; see the errors above.", err=True
        )
        raise typer.Exit(code=1)


@app.command("predict")
def predict(
    model: ModelOption,
    inputs: Annotated[
        list[str],
        typer.Argument(help="Image files, folders or gs:// / s3:// prefixes.", metavar="IMAGE..."),
    ],
    jsonl: Annotated[bool, typer.Option(help="One JSON object per line instead of text.")] = False,
    threshold: ThresholdOption = _EVALUATE.threshold,
) -> None:
    """Print label and probability for each image; unreadable images are reported.

    Each line: LABEL, P(LABEL) and IMAGE, tab-separated (--jsonl: image, label, probability, p_dog).

    A bad image gets an ERROR line on stderr (--jsonl: image, error); the batch goes on, exit code 1.

    A bad model folder or option exits with 2 before any prediction.
    """
    from catsdogs.components.common import model_dir
    from catsdogs.components.predict import core as predictor

    if not 0.0 < threshold < 1.0:
        raise SettingsError(f"--threshold must be in (0, 1), got {threshold}.")
    failed = 0
    model = model_dir.resolve(model).folder
    classes = model_dir.model_classes(model)
    # The result lines on a terminal are the progress; redirected, stderr shows n/N images.
    for item in predictor.predict(model, inputs, threshold, progress=not sys.stdout.isatty()):
        failed += item.error is not None
        if jsonl:
            typer.echo(json.dumps(item.to_dict(classes)))
        elif item.error is not None:
            typer.echo(f"ERROR\t{item.image}\t{item.error}", err=True)
        else:
            typer.echo(f"{item.label}\t{item.probability:.4f}\t{item.image}")
    if failed:
        typer.echo(f"{failed} image(s) could not be read; see the errors above.", err=True)
        raise typer.Exit(code=1)
