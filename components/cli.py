"""The ``catsdogs`` command line: one command per component, plus run/compile/submit/schedule/predict.

Heavy imports (tensorflow, keras, kfp, google-cloud-storage) happen inside the commands, so
``catsdogs --help`` stays fast. Errors a user can fix end in one line on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

app = typer.Typer(
    name="catsdogs",
    help="Dogs-vs-Cats on Kubeflow: prepare data, train, evaluate, render, and run the pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit with status 2."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code=2)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix (bad values, missing inputs, storage problems) into one line."""
    from catsdogs.components.common.storage import StorageError

    try:
        yield
    except (ValueError, FileNotFoundError, FileExistsError, StorageError) as error:
        fail(str(error).splitlines()[0] if str(error) else repr(error))


# ------------------------------------------------------------------------------- prepare
# (prepare_dataset section)

PETIMAGES_URL = (
    "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/"
    "kagglecatsanddogs_5340.zip"
)


@app.command()
def prepare(
    output: Annotated[
        str, typer.Option(help="Folder or gs:// prefix for the shards, report and manifest.")
    ],
    source: Annotated[
        str,
        typer.Option(
            help="Folder (cat.<id>.jpg files or Cat/ Dog/ subfolders), .zip/.tar(.gz), gs:// "
            "prefix or archive object, or https:// URL. Default: Microsoft's PetImages archive."
        ),
    ] = PETIMAGES_URL,
    train_per_class: Annotated[
        int | None, typer.Option(help="Training images per class (default 1000).")
    ] = None,
    val_per_class: Annotated[
        int | None, typer.Option(help="Validation images per class (default 500).")
    ] = None,
    test_per_class: Annotated[
        int | None, typer.Option(help="Test images per class (default 500).")
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(help="Split by fractions instead: share of each class for validation."),
    ] = None,
    test_fraction: Annotated[
        float | None,
        typer.Option(help="Split by fractions instead: share of each class for test."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the deterministic split.")] = 1337,
    max_side: Annotated[
        int, typer.Option(help="Downscale so the longer side is at most this many pixels.")
    ] = 256,
    workers: Annotated[int, typer.Option(help="Decoding processes (0: all cores).")] = 0,
    sha256: Annotated[
        str, typer.Option(help="Expected sha256 of a downloaded (https://) source.")
    ] = "",
) -> None:
    """Validate, split and shard the photos of SOURCE into a prepared dataset at OUTPUT."""
    counts = {
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
        "test_per_class": test_per_class,
    }
    fractions = {"val_fraction": val_fraction, "test_fraction": test_fraction}
    given_counts = [k for k, v in counts.items() if v is not None]
    given_fractions = [k for k, v in fractions.items() if v is not None]
    if given_counts and given_fractions:
        fail(
            f"--{given_counts[0].replace('_', '-')} and --{given_fractions[0].replace('_', '-')} "
            "cannot be combined: split either by per-class counts or by fractions, not both."
        )
    with user_errors():
        from catsdogs.components.prepare_dataset import core

        chosen: dict[str, Any] = {k: v for k, v in {**counts, **fractions}.items() if v is not None}
        cfg = core.PrepareConfig(
            **chosen, seed=seed, max_side=max_side, workers=workers, sha256=sha256
        )
        result = core.prepare(source, output, cfg)
    summary = ", ".join(f"{split} {n}" for split, n in result.counts.items())
    state = "already prepared" if result.already_prepared else "prepared"
    typer.echo(
        f"{result.output} {state}: {summary}; {result.quarantined} quarantined. "
        f"Manifest: {result.manifest_uri}"
    )


# ------------------------------------------------------------------------------- training
# (train_scratch and train_transfer section)


class MixedPrecisionMode(enum.StrEnum):
    """Mixed precision for the training commands: auto = on only when a GPU is present."""

    auto = "auto"
    on = "on"
    off = "off"


# Options shared by both trainers (same names, help and meaning).
DataOption = Annotated[
    str, typer.Option(help="Prepared dataset folder or gs:// prefix (from `catsdogs prepare`).")
]
ModelOutputOption = Annotated[
    str, typer.Option(help="Model folder or gs:// prefix to write (new, or this same run).")
]
BatchSizeOption = Annotated[int, typer.Option(help="Images per step.")]
SeedOption = Annotated[int, typer.Option(help="Seed for weights, shuffling, augmentation.")]
CheckpointOption = Annotated[
    str, typer.Option(help="Per-epoch checkpoints (local or gs://); default <output>/.checkpoint.")
]
PatienceOption = Annotated[
    int, typer.Option(help="Stop after N epochs without a lower val_loss (0 = off).")
]
MixedPrecisionOption = Annotated[
    MixedPrecisionMode, typer.Option(help="mixed_float16: auto = only on a GPU.")
]
XlaOption = Annotated[bool, typer.Option(help="Compile the training step with XLA.")]
RequireGpuOption = Annotated[bool, typer.Option(help="Fail at once when there is no GPU.")]


@app.command("train-scratch")
def train_scratch(
    data: DataOption,
    output: ModelOutputOption,
    epochs: Annotated[int, typer.Option(help="Passes over the training split.")] = 100,
    batch_size: BatchSizeOption = 32,
    learning_rate: Annotated[float, typer.Option(help="RMSprop learning rate.")] = 1e-4,
    seed: SeedOption = 1337,
    image_size: Annotated[int, typer.Option(help="Square input size in pixels.")] = 150,
    checkpoint_dir: CheckpointOption = "",
    early_stopping_patience: PatienceOption = 0,
    mixed_precision: MixedPrecisionOption = MixedPrecisionMode.auto,
    xla: XlaOption = False,
    require_gpu: RequireGpuOption = False,
) -> None:
    """Train the seed's convnet from scratch with augmentation; rerun the same command to resume."""
    import json

    with user_errors():
        from catsdogs.components.train_scratch import core

        settings = core.ScratchSettings(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
            image_size=(image_size, image_size),
            checkpoint_dir=checkpoint_dir,
            early_stopping_patience=early_stopping_patience,
            mixed_precision=MixedPrecisionMode(mixed_precision).value,
            xla=xla,
            require_gpu=require_gpu,
        )
        result = core.train_scratch(data, output, settings)
    typer.echo(json.dumps(result.metrics, sort_keys=True))


class TransferMode(enum.StrEnum):
    """How train-transfer uses the backbone."""

    features = "features"
    frozen = "frozen"
    fine_tune = "fine-tune"


@app.command("train-transfer")
def train_transfer(
    data: DataOption,
    output: ModelOutputOption,
    backbone: Annotated[
        str,
        typer.Option(help="vgg16, mobilenet_v2, resnet50 or any keras.applications model."),
    ] = "vgg16",
    weights: Annotated[
        str,
        typer.Option(help="imagenet (downloads), or a path / gs:// URI of a notop .h5 file."),
    ] = "imagenet",
    mode: Annotated[
        TransferMode,
        typer.Option(help="features (backbone run once), frozen (the book), fine-tune."),
    ] = TransferMode.features,
    epochs: Annotated[
        int, typer.Option(help="Epochs of the head (features) or of the frozen phase.")
    ] = 30,
    batch_size: BatchSizeOption = 32,
    learning_rate: Annotated[float, typer.Option(help="RMSprop learning rate (the book).")] = 2e-5,
    fine_tune_epochs: Annotated[int, typer.Option(help="Epochs after unfreezing.")] = 10,
    fine_tune_learning_rate: Annotated[
        float, typer.Option(help="RMSprop learning rate after unfreezing.")
    ] = 1e-5,
    unfreeze_from: Annotated[
        str,
        typer.Option(help="First layer (name prefix) to unfreeze; default: the last block."),
    ] = "",
    image_size: Annotated[
        int, typer.Option(help="Square input size; 0: the backbone's (VGG16 150, others 224).")
    ] = 0,
    pooling: Annotated[
        str, typer.Option(help="flatten or avg before the head; empty: the backbone's.")
    ] = "",
    augment: Annotated[
        bool, typer.Option(help="The scratch trainer's augmentation (frozen, fine-tune).")
    ] = True,
    features: Annotated[
        str,
        typer.Option(help="Features cache folder or gs:// prefix; default: the local cache."),
    ] = "",
    seed: SeedOption = 1337,
    checkpoint_dir: CheckpointOption = "",
    early_stopping_patience: PatienceOption = 0,
    mixed_precision: MixedPrecisionOption = MixedPrecisionMode.auto,
    xla: XlaOption = False,
    require_gpu: RequireGpuOption = False,
) -> None:
    """Train an ImageNet backbone + new head; rerun the same command to resume."""
    import json

    with user_errors():
        from catsdogs.components.train_transfer import core

        settings = core.TransferSettings(
            backbone=backbone,
            weights=weights,
            mode=TransferMode(mode).value,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            fine_tune_epochs=fine_tune_epochs,
            fine_tune_learning_rate=fine_tune_learning_rate,
            unfreeze_from=unfreeze_from,
            image_size=(image_size, image_size),
            pooling=pooling,
            augment=augment,
            seed=seed,
            checkpoint_dir=checkpoint_dir,
            early_stopping_patience=early_stopping_patience,
            mixed_precision=MixedPrecisionMode(mixed_precision).value,
            xla=xla,
            require_gpu=require_gpu,
        )
        result = core.train_transfer(data, output, settings, features=features)
    typer.echo(json.dumps(result.metrics, sort_keys=True))


# ------------------------------------------------------------------------------- evaluation
# (evaluate, promote, render, predict section)


@app.command("evaluate")
def evaluate(
    model: Annotated[str, typer.Option(help="Model folder or gs:// prefix with model.keras.")],
    data: Annotated[str, typer.Option(help="Prepared dataset folder or gs:// prefix.")],
    output: Annotated[
        str, typer.Option(help="Evaluation folder or gs:// prefix (metrics.json, report.html).")
    ],
    champion: Annotated[
        str, typer.Option(help="Champion location: run the champion gate after evaluating.")
    ] = "",
    margin: Annotated[
        float, typer.Option(help="With --champion: promote when accuracy beats it by more.")
    ] = 0.0,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 32,
    threshold: Annotated[float, typer.Option(help="Predict the second class at P >= this.")] = 0.5,
    gallery_size: Annotated[
        int, typer.Option(help="Most confidently wrong test images shown in the report.")
    ] = 12,
) -> None:
    """Score a model on the test split: metrics.json, confusion.png, roc.png, report.html."""
    import json

    with user_errors():
        from catsdogs.components.evaluate import champion as gate
        from catsdogs.components.evaluate import core

        settings = core.EvaluateConfig(
            batch_size=batch_size, threshold=threshold, gallery_size=gallery_size
        )
        promote_settings = gate.PromoteConfig(margin=margin)
        result = core.evaluate(model, data, output, settings)
        typer.echo(json.dumps(result.scalars, sort_keys=True))
        if champion:
            decision = gate.promote(model, output, data, champion, promote_settings)
            typer.echo(json.dumps(decision.to_dict(), sort_keys=True))


@app.command("promote")
def promote(
    model: Annotated[str, typer.Option(help="Model folder or gs:// prefix with model.keras.")],
    evaluation: Annotated[str, typer.Option(help="Its evaluation folder (from `evaluate`).")],
    data: Annotated[str, typer.Option(help="The prepared dataset it was evaluated on.")],
    champion: Annotated[str, typer.Option(help="Champion location: folder or gs:// prefix.")],
    margin: Annotated[
        float, typer.Option(help="Promote when the metric beats the champion's by more.")
    ] = 0.0,
    metric: Annotated[str, typer.Option(help="accuracy, f1, roc_auc, precision or recall.")] = (
        "accuracy"
    ),
    retries: Annotated[
        int, typer.Option(help="Re-decisions after losing a race to a concurrent promotion.")
    ] = 2,
) -> None:
    """Make the model the champion if it beats the current one on the same test split."""
    import json

    with user_errors():
        from catsdogs.components.evaluate import champion as gate

        settings = gate.PromoteConfig(margin=margin, metric=metric, retries=retries)
        decision = gate.promote(model, evaluation, data, champion, settings)
    typer.echo(json.dumps(decision.to_dict(), sort_keys=True))


@app.command("render")
def render(
    model: Annotated[str, typer.Option(help="Model folder or gs:// prefix with model.keras.")],
    output: Annotated[
        str, typer.Option(help="Folder or gs:// prefix for the PNGs and index.html.")
    ],
    image: Annotated[
        list[str] | None, typer.Option(help="Image file (local or gs://); repeat for more.")
    ] = None,
    data: Annotated[
        str, typer.Option(help="Prepared dataset: its test images are used when no --image.")
    ] = "",
    layer: Annotated[
        str, typer.Option(help="Layer whose channels are enlarged (default: first conv).")
    ] = "",
    channel: Annotated[
        list[int] | None, typer.Option(help="Channel of --layer to enlarge; repeat (default 4, 7).")
    ] = None,
    images_per_class: Annotated[
        int, typer.Option(help="Test images per class when no --image.")
    ] = 2,
) -> None:
    """Activation grids of every conv/pooling layer, chosen channels, Grad-CAM and curves."""
    with user_errors():
        from catsdogs.components.render_activations import core

        settings = core.RenderConfig(
            layer=layer, channels=tuple(channel or ()), images_per_class=images_per_class
        )
        result = core.render(model, output, list(image or []), data, settings)
    for item in result.predictions:
        typer.echo(f"{item['label']}\t{item['p']:.4f}\t{item['image']}")
    typer.echo(f"Wrote {len(result.files)} files; open {result.output}/index.html")


@app.command("predict")
def predict(
    model: Annotated[str, typer.Option(help="Model folder or gs:// prefix with model.keras.")],
    inputs: Annotated[
        list[str],
        typer.Argument(help="Image files, folders or gs:// prefixes.", metavar="IMAGE..."),
    ],
    jsonl: Annotated[bool, typer.Option(help="One JSON object per line instead of text.")] = False,
    threshold: Annotated[float, typer.Option(help="Predict the second class at P >= this.")] = 0.5,
) -> None:
    """Print label and probability for each image; unreadable images are reported.

    Each line: LABEL, P(LABEL) and IMAGE, tab-separated (--jsonl: image, label, probability, p_dog).

    A bad image gets an ERROR line on stderr (--jsonl: image, error); the batch goes on, exit code 1.

    A bad model folder or option exits with 2 before any prediction.
    """
    import json

    from catsdogs.components.evaluate import predict as predictor

    failed = 0
    with user_errors():
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"--threshold must be in (0, 1), got {threshold}.")
        classes = predictor.model_classes(model)
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


# ------------------------------------------------------------------------------- pipeline
# (run, compile, submit, schedule section)


class Trainers(enum.StrEnum):
    """Which trainers a pipeline run uses."""

    both = "both"
    scratch = "scratch"
    transfer = "transfer"


# Pipeline parameters, shared by run, submit and schedule create (defaults = RunParameters').
_Source = Annotated[str, typer.Option(help="Folder, .zip/.tar, gs:// prefix or https:// URL.")]
_TrainPer = Annotated[int, typer.Option(help="Training images per class.")]
_ValPer = Annotated[int, typer.Option(help="Validation images per class.")]
_TestPer = Annotated[int, typer.Option(help="Test images per class.")]
_Seed = Annotated[int, typer.Option(help="Seed for the split and training.")]
_Trainers = Annotated[Trainers, typer.Option(help="Which trainers run.")]
_ScratchEpochs = Annotated[int, typer.Option(help="Epochs for the CNN trained from scratch.")]
_TransferEpochs = Annotated[int, typer.Option(help="Epochs for the transfer model's head.")]
_Batch = Annotated[int, typer.Option(help="Batch size for both trainers.")]
_LearningRate = Annotated[float, typer.Option(help="Learning rate of the scratch CNN.")]
_Backbone = Annotated[str, typer.Option(help="keras.applications backbone (vgg16, ...).")]
_Weights = Annotated[str, typer.Option(help="'imagenet' or a path to a weights .h5 file.")]
_Mode = Annotated[str, typer.Option("--transfer-mode", help="features, frozen or fine-tune.")]
_Champion = Annotated[str, typer.Option(help="Champion model URI; empty skips the gate.")]
_Margin = Annotated[float, typer.Option(help="Accuracy a challenger must beat the champion by.")]
_Checkpoints = Annotated[
    str, typer.Option(help="gs:// prefix for per-epoch checkpoints: a retried trainer resumes.")
]
# Compile-time options.
_AcceleratorType = Annotated[str, typer.Option(help="Accelerator each GPU task requests.")]
_AcceleratorCount = Annotated[int, typer.Option(help="Accelerators per GPU task.")]
_NodeSelector = Annotated[
    list[str] | None, typer.Option(help="label=value for GPU tasks' node selector (repeatable).")
]
_Toleration = Annotated[
    list[str] | None, typer.Option(help="key[=value][:effect] toleration for GPU tasks (repeat).")
]
_Retries = Annotated[int, typer.Option(help="Retries of a GPU task (spot preemption).")]
# Cluster connection (credentials only from the environment: KFP_TOKEN, KF_PIPELINES_*).
_Host = Annotated[str | None, typer.Option(help="KFP endpoint; default KFP_HOST or in-cluster.")]
_Namespace = Annotated[str | None, typer.Option(help="Profile namespace (multi-user KFP).")]
_Experiment = Annotated[str, typer.Option(help="Experiment to run in (created if missing).")]
_PipelineName = Annotated[
    str, typer.Option(help="Pipeline name in KFP (new version if it exists).")
]
_Package = Annotated[
    Path | None,
    typer.Option(help="A compiled pipeline YAML; default: compile now with default options."),
]


def _run_parameters(**values: Any) -> Any:
    from catsdogs.pipelines.local_run import RunParameters

    values["trainers"] = values["trainers"].value
    with user_errors():
        return RunParameters(**values)


def _target(**values: Any) -> Any:
    from catsdogs.pipelines.submit import Target

    with user_errors():
        return Target.from_environment(**values)


@contextlib.contextmanager
def _package(package: Path | None) -> Iterator[Path]:
    """The given compiled YAML, or a freshly compiled one in a temporary folder."""
    import tempfile

    if package is not None:
        if not package.is_file():
            fail(f"--package {package} does not exist; run `catsdogs compile --output FILE` first.")
        yield package
        return
    from catsdogs.pipelines.compile import compile_pipeline

    with tempfile.TemporaryDirectory() as folder, user_errors():
        yield compile_pipeline(Path(folder) / "catsdogs.yaml")


@contextlib.contextmanager
def _kfp_errors() -> Iterator[None]:
    from catsdogs.pipelines.submit import KfpError
    from kfp_server_api.exceptions import ApiException

    try:
        with user_errors():
            yield
    except KfpError as error:
        fail(str(error))
    except ApiException as error:
        fail(f"Kubeflow Pipelines refused the request: HTTP {error.status} {error.reason}.")


@app.command("compile")
def compile_command(
    output: Annotated[Path, typer.Option(help="Where to write the compiled pipeline YAML.")],
    accelerator_type: _AcceleratorType = "nvidia.com/gpu",
    accelerator_count: _AcceleratorCount = 1,
    node_selector: _NodeSelector = None,
    toleration: _Toleration = None,
    retries: _Retries = 3,
) -> None:
    """Compile the pipeline for a cluster (GPU requests, retries; image must be pinned)."""
    from catsdogs.pipelines.compile import compile_pipeline
    from catsdogs.pipelines.pipeline import PipelineOptions, Toleration, parse_node_selector

    with user_errors():
        options = PipelineOptions(
            accelerator_type=accelerator_type,
            accelerator_count=accelerator_count,
            node_selector=parse_node_selector(node_selector or []),
            tolerations=tuple(Toleration.parse(item) for item in toleration or []),
            retries=retries,
        )
        path = compile_pipeline(output, options)
    typer.echo(f"Compiled pipeline: {path}")


@app.command("run")
def run_command(
    source: _Source,
    output: Annotated[Path, typer.Option(help="Local folder for the run's artifacts.")] = Path(
        "runs"
    ),
    train_per_class: _TrainPer = 1000,
    val_per_class: _ValPer = 500,
    test_per_class: _TestPer = 500,
    seed: _Seed = 1337,
    trainers: _Trainers = Trainers.both,
    scratch_epochs: _ScratchEpochs = 100,
    transfer_epochs: _TransferEpochs = 30,
    batch_size: _Batch = 32,
    learning_rate: _LearningRate = 1e-4,
    backbone: _Backbone = "vgg16",
    weights: _Weights = "imagenet",
    transfer_mode: _Mode = "features",
    champion_uri: _Champion = "",
    margin: _Margin = 0.0,
    checkpoint_root: _Checkpoints = "",
) -> None:
    """Run the whole pipeline on this machine with KFP's local runner (kfp.local)."""
    values = dict(locals())
    from catsdogs.pipelines.local_run import run_local

    parameters = _run_parameters(**{k: v for k, v in values.items() if k != "output"})
    try:
        with user_errors():
            run = run_local(parameters, output)
    except typer.Exit:
        raise
    except RuntimeError as error:  # a task failed; kfp.local printed its log above
        fail(f"{(str(error).splitlines() or [repr(error)])[0]} See the task's log above.")
    typer.echo(run.summary())


@app.command("submit")
def submit_command(
    source: _Source,
    train_per_class: _TrainPer = 1000,
    val_per_class: _ValPer = 500,
    test_per_class: _TestPer = 500,
    seed: _Seed = 1337,
    trainers: _Trainers = Trainers.both,
    scratch_epochs: _ScratchEpochs = 100,
    transfer_epochs: _TransferEpochs = 30,
    batch_size: _Batch = 32,
    learning_rate: _LearningRate = 1e-4,
    backbone: _Backbone = "vgg16",
    weights: _Weights = "imagenet",
    transfer_mode: _Mode = "features",
    champion_uri: _Champion = "",
    margin: _Margin = 0.0,
    checkpoint_root: _Checkpoints = "",
    package: _Package = None,
    host: _Host = None,
    namespace: _Namespace = None,
    experiment: _Experiment = "catsdogs",
    pipeline_name: _PipelineName = "catsdogs",
    run_name: Annotated[str | None, typer.Option(help="Run display name.")] = None,
) -> None:
    """Upload the pipeline (a new version if it exists), start a run, print its URL."""
    values = dict(locals())
    from catsdogs.pipelines.submit import submit

    connection = {k: values.pop(k) for k in ("host", "namespace", "experiment", "pipeline_name")}
    package, run_name = values.pop("package"), values.pop("run_name")
    target = _target(**connection)
    parameters = _run_parameters(**values)
    with _package(package) as path, _kfp_errors():
        result = submit(path, target, parameters.arguments(), run_name=run_name)
    typer.echo(f"Pipeline version: {result.uploaded.version_name}")
    typer.echo(f"Run {result.run_id}: {result.url}")


schedule_app = typer.Typer(help="Recurring runs (scheduled retraining): create, list, delete.")
app.add_typer(schedule_app, name="schedule")


@schedule_app.command("create")
def schedule_create_command(
    source: _Source,
    cron: Annotated[str, typer.Option(help="'0 3 * * *' (5 fields) or 6 with seconds first.")],
    name: Annotated[str, typer.Option(help="Recurring run name.")] = "catsdogs-retrain",
    max_concurrency: Annotated[int, typer.Option(help="Runs at once, at most.")] = 1,
    catchup: Annotated[bool, typer.Option(help="Backfill every missed interval.")] = False,
    train_per_class: _TrainPer = 1000,
    val_per_class: _ValPer = 500,
    test_per_class: _TestPer = 500,
    seed: _Seed = 1337,
    trainers: _Trainers = Trainers.both,
    scratch_epochs: _ScratchEpochs = 100,
    transfer_epochs: _TransferEpochs = 30,
    batch_size: _Batch = 32,
    learning_rate: _LearningRate = 1e-4,
    backbone: _Backbone = "vgg16",
    weights: _Weights = "imagenet",
    transfer_mode: _Mode = "features",
    champion_uri: _Champion = "",
    margin: _Margin = 0.0,
    checkpoint_root: _Checkpoints = "",
    package: _Package = None,
    host: _Host = None,
    namespace: _Namespace = None,
    experiment: _Experiment = "catsdogs",
    pipeline_name: _PipelineName = "catsdogs",
) -> None:
    """Create a recurring run of the pipeline (uploads a new pipeline version first)."""
    values = dict(locals())
    from catsdogs.pipelines import schedule

    connection = {k: values.pop(k) for k in ("host", "namespace", "experiment", "pipeline_name")}
    settings = {k: values.pop(k) for k in ("cron", "name", "max_concurrency", "catchup", "package")}
    with user_errors():
        kfp_cron = schedule.to_kfp_cron(settings["cron"])
    target = _target(**connection)
    parameters = _run_parameters(**values)
    with _package(settings["package"]) as path, _kfp_errors():
        recurring_run_id, kfp_cron = schedule.create(
            path,
            target,
            parameters.arguments(),
            cron=kfp_cron,
            name=settings["name"],
            max_concurrency=settings["max_concurrency"],
            no_catchup=not settings["catchup"],
        )
    typer.echo(f"Recurring run {recurring_run_id}: cron '{kfp_cron}' (KFP, seconds first)")
    typer.echo(target.url(f"recurringrun/details/{recurring_run_id}"))


@schedule_app.command("list")
def schedule_list_command(host: _Host = None, namespace: _Namespace = None) -> None:
    """List the recurring runs."""
    from catsdogs.pipelines import schedule
    from catsdogs.pipelines.submit import connect

    target = _target(host=host, namespace=namespace)
    with _kfp_errors():
        schedules = schedule.list_schedules(connect(target), target)
    if not schedules:
        typer.echo("No recurring runs.")
    for item in schedules:
        typer.echo(
            f"{item.recurring_run_id}  {item.name}  cron='{item.cron}'  {item.status}  "
            f"max_concurrency={item.max_concurrency}  no_catchup={item.no_catchup}"
        )


@schedule_app.command("delete")
def schedule_delete_command(
    recurring_run_id: Annotated[str, typer.Argument(help="Id from `catsdogs schedule list`.")],
    host: _Host = None,
    namespace: _Namespace = None,
) -> None:
    """Delete a recurring run (its past runs stay)."""
    from catsdogs.pipelines import schedule
    from catsdogs.pipelines.submit import connect

    target = _target(host=host, namespace=namespace)
    with _kfp_errors():
        schedule.delete(connect(target), recurring_run_id)
    typer.echo(f"Deleted recurring run {recurring_run_id}")


def main() -> None:
    """Entry point for ``python -m catsdogs.components.cli``."""
    app()


if __name__ == "__main__":
    main()
