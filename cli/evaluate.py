"""``catsdogs evaluate``, ``promote``, ``render`` and ``predict``: what follows training."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from catsdogs.components.common.errors import SettingsError
from catsdogs.components.evaluate.core import EvaluateConfig
from catsdogs.components.promote.core import PromoteConfig
from catsdogs.components.render_activations.core import RenderConfig

app = typer.Typer()
_EVALUATE = EvaluateConfig()
_PROMOTE = PromoteConfig()
_RENDER = RenderConfig()

ModelOption = Annotated[
    str, typer.Option(help="Model folder or gs:// / s3:// prefix with model.keras.")
]
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
) -> None:
    """Score a model on the test split: evaluation.json, confusion.png, roc.png, report.html."""
    from catsdogs.components.evaluate import core
    from catsdogs.components.promote import core as gate

    settings = EvaluateConfig(batch_size=batch_size, threshold=threshold, gallery_size=gallery_size)
    promote_settings = PromoteConfig(margin=margin)
    result = core.evaluate(model, data, output, settings)
    typer.echo(json.dumps(result.scalars, sort_keys=True))
    if champion:
        decision = gate.promote(model, output, data, champion, promote_settings)
        typer.echo(json.dumps(decision.to_dict(), sort_keys=True))


@app.command("promote")
def promote(
    model: ModelOption,
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
) -> None:
    """Make the model the champion if it beats the current one on the same test split."""
    from catsdogs.components.promote import core as gate

    settings = PromoteConfig(margin=margin, metric=metric, retries=retries)
    decision = gate.promote(model, evaluation, data, champion, settings)
    typer.echo(json.dumps(decision.to_dict(), sort_keys=True))


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

    settings = RenderConfig(
        layer=layer, channels=tuple(channel or ()), images_per_class=images_per_class
    )
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
    classes = model_dir.model_classes(model)
    for item in predictor.predict(model, inputs, threshold):
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
