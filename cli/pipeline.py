"""``catsdogs run``, ``submit`` and ``schedule``: the pipeline, locally or on a cluster.

The pipeline parameters' defaults come from :class:`~catsdogs.pipelines.local_run.RunParameters`
(which reads them from the components' settings); ``compile`` and the package a cluster command
sends are in ``cli/package.py``.
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Annotated, Any

import typer
from catsdogs.cli.package import AllowTagOption, PackageOption, RetryNoteOption, cluster_package
from catsdogs.cli.train import Architecture, Augmentation, TransferMode
from catsdogs.components.common import storage
from catsdogs.pipelines import schedule
from catsdogs.pipelines.local_run import RUNNERS, RunParameters
from catsdogs.pipelines.pipeline import TRAINERS
from catsdogs.pipelines.submit import Target

app = typer.Typer()
schedule_app = typer.Typer(help="Recurring runs (scheduled retraining): create, list, delete.")

_RUN: dict[str, Any] = {field.name: field.default for field in dataclasses.fields(RunParameters)}
TARGET_DEFAULTS: dict[str, Any] = {
    field.name: field.default for field in dataclasses.fields(Target)
}

Trainers = enum.StrEnum("Trainers", [(name, name) for name in TRAINERS])  # type: ignore[misc]
Trainers.__doc__ = "Which trainers a pipeline run uses."
_DEFAULT_TRAINERS = Trainers(_RUN["trainers"])
Runner = enum.StrEnum("Runner", [(name, name) for name in RUNNERS])  # type: ignore[misc]
Runner.__doc__ = "How kfp.local runs each task of ``catsdogs run``."
_DEFAULT_RUNNER = Runner(RUNNERS[0])
_DEFAULT_MODE = TransferMode(_RUN["transfer_mode"])
_DEFAULT_ARCHITECTURE = Architecture(_RUN["scratch_architecture"])
_DEFAULT_AUGMENTATION = Augmentation(_RUN["scratch_augmentation"])

# Pipeline parameters, shared by run, submit and schedule create.
_Source = Annotated[
    str, typer.Option(help="Folder, .zip/.tar, gs:// or s3:// prefix or https:// URL.")
]
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
_Mode = Annotated[TransferMode, typer.Option("--transfer-mode", help="How the backbone is used.")]
_Champion = Annotated[str, typer.Option(help="Champion model URI; empty skips the gate.")]
_Serving = Annotated[
    str, typer.Option(help="gs:// / s3:// prefix to export and deploy champions to; empty: off.")
]
_ServiceName = Annotated[str, typer.Option(help="KServe InferenceService name of the champion.")]
_Architecture = Annotated[Architecture, typer.Option(help="The CNN trained from scratch.")]
_Augmentation = Annotated[Augmentation, typer.Option(help="The scratch CNN's augmentation.")]
_StepsPerEpoch = Annotated[int, typer.Option(help="Scratch batches per epoch; 0: one pass.")]
_Margin = Annotated[float, typer.Option(help="Accuracy a challenger must beat the champion by.")]
_Checkpoints = Annotated[
    str, typer.Option(help="gs:// / s3:// prefix for per-epoch checkpoints: a retry resumes.")
]
# Cluster connection (credentials only from the environment: KFP_TOKEN, KF_PIPELINES_*).
HostOption = Annotated[
    str | None, typer.Option(help="KFP endpoint; default KFP_HOST or in-cluster.")
]
NamespaceOption = Annotated[
    str | None, typer.Option(help="Your profile namespace (multi-user KFP); default KFP_NAMESPACE.")
]
KfpNamespaceOption = Annotated[
    str, typer.Option(help="Namespace Kubeflow Pipelines itself runs in (in-cluster host).")
]
_PipelineRoot = Annotated[
    str | None,
    typer.Option(help="Where the run's artifacts go (gs://, s3://, minio://); default: server's."),
]
_ServiceAccount = Annotated[
    str | None, typer.Option(help="Kubernetes service account of the run's pods.")
]
_Experiment = Annotated[str, typer.Option(help="Experiment to run in (created if missing).")]
_PipelineName = Annotated[
    str, typer.Option(help="Pipeline name in KFP (new version if it exists).")
]
_CONNECTION = (
    "host",
    "namespace",
    "kfp_namespace",
    "experiment",
    "pipeline_name",
    "pipeline_root",
    "service_account",
)


def _run_parameters(**values: Any) -> RunParameters:
    values["trainers"] = Trainers(values["trainers"]).value
    values["transfer_mode"] = TransferMode(values["transfer_mode"]).value
    values["scratch_architecture"] = Architecture(values["scratch_architecture"]).value
    values["scratch_augmentation"] = Augmentation(values["scratch_augmentation"]).value
    return RunParameters(**values)


@app.command("run")
def run_command(
    source: _Source,
    output: Annotated[Path, typer.Option(help="Local folder for the run's artifacts.")] = Path(
        "runs"
    ),
    train_per_class: _TrainPer = _RUN["train_per_class"],
    val_per_class: _ValPer = _RUN["val_per_class"],
    test_per_class: _TestPer = _RUN["test_per_class"],
    seed: _Seed = _RUN["seed"],
    trainers: _Trainers = _DEFAULT_TRAINERS,
    scratch_epochs: _ScratchEpochs = _RUN["scratch_epochs"],
    scratch_architecture: _Architecture = _DEFAULT_ARCHITECTURE,
    scratch_augmentation: _Augmentation = _DEFAULT_AUGMENTATION,
    scratch_steps_per_epoch: _StepsPerEpoch = _RUN["scratch_steps_per_epoch"],
    transfer_epochs: _TransferEpochs = _RUN["transfer_epochs"],
    batch_size: _Batch = _RUN["batch_size"],
    learning_rate: _LearningRate = _RUN["learning_rate"],
    backbone: _Backbone = _RUN["backbone"],
    weights: _Weights = _RUN["weights"],
    transfer_mode: _Mode = _DEFAULT_MODE,
    champion_uri: _Champion = _RUN["champion_uri"],
    margin: _Margin = _RUN["margin"],
    checkpoint_root: _Checkpoints = _RUN["checkpoint_root"],
    serving_uri: _Serving = _RUN["serving_uri"],
    service_name: _ServiceName = _RUN["service_name"],
    runner: Annotated[
        Runner,
        typer.Option(help="subprocess: tasks use this install; docker: every task in the image."),
    ] = _DEFAULT_RUNNER,
    image: Annotated[
        str | None, typer.Option(help="Image for --runner docker; default CATSDOGS_IMAGE.")
    ] = None,
) -> None:
    """Run the whole pipeline on this machine with KFP's local runner (kfp.local).

    The defaults are the pipeline's: the book's split (1000/500/500 photos per class), the
    recipe's scratch epochs and VGG16 in features mode. `make run` runs the transfer model only
    (about 7 minutes on 2 CPU cores); `make run TRAINERS=both` adds the scratch CNN on a CPU budget
    of 8 epochs. The console shows each task's start, end and progress; its whole log is
    <task>/task.log beside its artifacts. The run ends with each model's test accuracy and 95%
    interval, the winner, the champion gate, the time per step and links to the reports.
    """
    values = dict(locals())
    from catsdogs.pipelines.local_run import run_local

    output, runner, image = values.pop("output"), values.pop("runner"), values.pop("image")
    storage.check_folder(output, "--output")
    run = run_local(_run_parameters(**values), output, runner=runner.value, image=image)
    typer.echo(run.summary())


@app.command("submit")
def submit_command(
    source: _Source,
    train_per_class: _TrainPer = _RUN["train_per_class"],
    val_per_class: _ValPer = _RUN["val_per_class"],
    test_per_class: _TestPer = _RUN["test_per_class"],
    seed: _Seed = _RUN["seed"],
    trainers: _Trainers = _DEFAULT_TRAINERS,
    scratch_epochs: _ScratchEpochs = _RUN["scratch_epochs"],
    scratch_architecture: _Architecture = _DEFAULT_ARCHITECTURE,
    scratch_augmentation: _Augmentation = _DEFAULT_AUGMENTATION,
    scratch_steps_per_epoch: _StepsPerEpoch = _RUN["scratch_steps_per_epoch"],
    transfer_epochs: _TransferEpochs = _RUN["transfer_epochs"],
    batch_size: _Batch = _RUN["batch_size"],
    learning_rate: _LearningRate = _RUN["learning_rate"],
    backbone: _Backbone = _RUN["backbone"],
    weights: _Weights = _RUN["weights"],
    transfer_mode: _Mode = _DEFAULT_MODE,
    champion_uri: _Champion = _RUN["champion_uri"],
    margin: _Margin = _RUN["margin"],
    checkpoint_root: _Checkpoints = _RUN["checkpoint_root"],
    serving_uri: _Serving = _RUN["serving_uri"],
    service_name: _ServiceName = _RUN["service_name"],
    package: PackageOption = None,
    host: HostOption = None,
    namespace: NamespaceOption = None,
    kfp_namespace: KfpNamespaceOption = TARGET_DEFAULTS["kfp_namespace"],
    experiment: _Experiment = TARGET_DEFAULTS["experiment"],
    pipeline_name: _PipelineName = TARGET_DEFAULTS["pipeline_name"],
    pipeline_root: _PipelineRoot = None,
    service_account: _ServiceAccount = None,
    run_name: Annotated[str | None, typer.Option(help="Run display name.")] = None,
    allow_tag: AllowTagOption = False,
) -> None:
    """Upload the pipeline (a new version if it exists), start a run, print its URL."""
    values = dict(locals())
    from catsdogs.pipelines.submit import check_cluster_arguments, submit

    connection = {k: values.pop(k) for k in _CONNECTION}
    package, run_name = values.pop("package"), values.pop("run_name")
    allow_tag = values.pop("allow_tag")
    target = Target.from_environment(**connection)
    parameters = _run_parameters(**values)
    check_cluster_arguments(parameters.arguments())  # before compiling or any request
    with cluster_package(package, allow_tag) as path:
        result = submit(path, target, parameters.arguments(), run_name=run_name)
    if result.server.warning:
        typer.echo(result.server.warning, err=True)
    typer.echo(f"Pipeline version: {result.uploaded.version_name}")
    typer.echo(f"Run {result.run_id}: {result.url}")


@schedule_app.command("create")
def schedule_create_command(
    source: _Source,
    cron: Annotated[str, typer.Option(help="'0 3 * * *' (5 fields) or 6 with seconds first.")],
    name: Annotated[str, typer.Option(help="Recurring run name.")] = schedule.DEFAULT_NAME,
    max_concurrency: Annotated[
        int, typer.Option(help="Runs at once, at most.")
    ] = schedule.DEFAULT_MAX_CONCURRENCY,
    catchup: Annotated[bool, typer.Option(help="Backfill every missed interval.")] = False,
    train_per_class: _TrainPer = _RUN["train_per_class"],
    val_per_class: _ValPer = _RUN["val_per_class"],
    test_per_class: _TestPer = _RUN["test_per_class"],
    seed: _Seed = _RUN["seed"],
    trainers: _Trainers = _DEFAULT_TRAINERS,
    scratch_epochs: _ScratchEpochs = _RUN["scratch_epochs"],
    scratch_architecture: _Architecture = _DEFAULT_ARCHITECTURE,
    scratch_augmentation: _Augmentation = _DEFAULT_AUGMENTATION,
    scratch_steps_per_epoch: _StepsPerEpoch = _RUN["scratch_steps_per_epoch"],
    transfer_epochs: _TransferEpochs = _RUN["transfer_epochs"],
    batch_size: _Batch = _RUN["batch_size"],
    learning_rate: _LearningRate = _RUN["learning_rate"],
    backbone: _Backbone = _RUN["backbone"],
    weights: _Weights = _RUN["weights"],
    transfer_mode: _Mode = _DEFAULT_MODE,
    champion_uri: _Champion = _RUN["champion_uri"],
    margin: _Margin = _RUN["margin"],
    checkpoint_root: _Checkpoints = _RUN["checkpoint_root"],
    serving_uri: _Serving = _RUN["serving_uri"],
    service_name: _ServiceName = _RUN["service_name"],
    package: PackageOption = None,
    host: HostOption = None,
    namespace: NamespaceOption = None,
    kfp_namespace: KfpNamespaceOption = TARGET_DEFAULTS["kfp_namespace"],
    experiment: _Experiment = TARGET_DEFAULTS["experiment"],
    pipeline_name: _PipelineName = TARGET_DEFAULTS["pipeline_name"],
    pipeline_root: _PipelineRoot = None,
    service_account: _ServiceAccount = None,
    retry_note: RetryNoteOption = True,
    allow_tag: AllowTagOption = False,
) -> None:
    """Create a recurring run of the pipeline, replacing one of the same name (new version first)."""
    values = dict(locals())
    from catsdogs.pipelines.submit import check_cluster_arguments

    connection = {k: values.pop(k) for k in _CONNECTION}
    names = ("cron", "name", "max_concurrency", "catchup", "package", "retry_note", "allow_tag")
    settings = {k: values.pop(k) for k in names}
    kfp_cron = schedule.to_kfp_cron(settings["cron"])
    target = Target.from_environment(**connection)
    parameters = _run_parameters(**values)
    check_cluster_arguments(parameters.arguments())  # before compiling or any request
    package = cluster_package(settings["package"], settings["allow_tag"], settings["retry_note"])
    with package as path:
        created = schedule.create(
            path,
            target,
            parameters.arguments(),
            cron=kfp_cron,
            name=settings["name"],
            max_concurrency=settings["max_concurrency"],
            no_catchup=not settings["catchup"],
        )
    if created.server.warning:
        typer.echo(created.server.warning, err=True)
    for old in created.replaced:
        typer.echo(f"Replaced recurring run {old} of the same name ({settings['name']})")
    typer.echo(
        f"Recurring run {created.recurring_run_id}: cron '{created.cron}' (KFP, seconds first)"
    )
    typer.echo(target.url(f"recurringrun/details/{created.recurring_run_id}"))


@schedule_app.command("list")
def schedule_list_command(
    host: HostOption = None,
    namespace: NamespaceOption = None,
    kfp_namespace: KfpNamespaceOption = TARGET_DEFAULTS["kfp_namespace"],
) -> None:
    """List the recurring runs."""
    from catsdogs.pipelines.submit import open_session

    target = Target.from_environment(host=host, namespace=namespace, kfp_namespace=kfp_namespace)
    schedules = schedule.list_schedules(open_session(target))
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
    host: HostOption = None,
    namespace: NamespaceOption = None,
    kfp_namespace: KfpNamespaceOption = TARGET_DEFAULTS["kfp_namespace"],
) -> None:
    """Delete a recurring run (its past runs stay)."""
    from catsdogs.pipelines.submit import open_session

    target = Target.from_environment(host=host, namespace=namespace, kfp_namespace=kfp_namespace)
    schedule.delete(open_session(target), recurring_run_id)
    typer.echo(f"Deleted recurring run {recurring_run_id}")
