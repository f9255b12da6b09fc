"""``catsdogs run``, ``submit`` and ``schedule``: the pipeline, locally or on a cluster.

The run parameters' options are derived from their one definition,
:class:`~catsdogs.pipelines.parameters.RunParameters` (``with_run_parameters``); ``compile`` and the
package a cluster command sends are in ``cli/package.py``.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from catsdogs.cli.package import (
    AllowTagOption,
    MlflowUriOption,
    PackageOption,
    RetryNoteOption,
    TensorboardRootOption,
    cluster_package,
)
from catsdogs.components.common import storage
from catsdogs.pipelines import parameters, schedule
from catsdogs.pipelines.local_run import RUNNERS
from catsdogs.pipelines.parameters import RunParameters
from catsdogs.pipelines.submit import Target

app = typer.Typer()
schedule_app = typer.Typer(help="Recurring runs (scheduled retraining): create, list, delete.")

TARGET_DEFAULTS: dict[str, Any] = {
    field.name: field.default for field in dataclasses.fields(Target)
}

Runner = enum.StrEnum("Runner", [(name, name) for name in RUNNERS])  # type: ignore[misc]
Runner.__doc__ = "How kfp.local runs each task of ``catsdogs run``."
_DEFAULT_RUNNER = Runner(RUNNERS[0])

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


def _choice_type(item: parameters.Parameter) -> Any:
    """A str Enum of the parameter's choices (typer shows and checks them)."""
    title = "".join(part.title() for part in item.name.split("_"))
    return enum.StrEnum(title, [(choice, choice) for choice in item.choices])  # type: ignore[misc]


def with_run_parameters(command: Callable[..., None]) -> Callable[..., None]:
    """Give a command one option per run parameter (pipelines/parameters.py), first in --help.

    The command takes ``parameters: RunParameters`` instead; its own options follow.
    """
    options = []
    for item in parameters.fields():
        kind: Any = _choice_type(item) if item.choices else item.type
        default = item.default if not item.choices else kind(item.default)
        annotation = Annotated[kind, typer.Option(help=parameters.description(item))]
        options.append(
            inspect.Parameter(
                item.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )
        )
    own = inspect.signature(command, eval_str=True)
    rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own.parameters.values()]
    rest = [p for p in rest if p.name != "parameters"]

    @functools.wraps(command)
    def wrapper(**values: Any) -> None:
        given = {name: values.pop(name) for name in parameters.NAMES}
        plain = {k: v.value if isinstance(v, enum.Enum) else v for k, v in given.items()}
        command(parameters=RunParameters(**plain), **values)

    signature = own.replace(parameters=[*options, *rest])
    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    return wrapper


@app.command("run")
@with_run_parameters
def run_command(
    parameters: RunParameters,
    output: Annotated[Path, typer.Option(help="Local folder for the run's artifacts.")] = Path(
        "runs"
    ),
    runner: Annotated[
        Runner,
        typer.Option(help="subprocess: tasks use this install; docker: every task in the image."),
    ] = _DEFAULT_RUNNER,
    image: Annotated[
        str | None, typer.Option(help="Image for --runner docker; default CATSDOGS_IMAGE.")
    ] = None,
    mlflow_uri: MlflowUriOption = "",
    tensorboard_root: TensorboardRootOption = "",
) -> None:
    """Run the whole pipeline on this machine with KFP's local runner (kfp.local).

    The defaults are the pipeline's: the book's split (1000/500/500 photos per class), the
    recipe's scratch epochs and VGG16 in features mode. `make run` runs the transfer model only
    (about 7 minutes on 2 CPU cores); `make run TRAINERS=both` adds the scratch CNN on a CPU budget
    of 8 epochs. The console shows each task's start, end and progress; its whole log is
    <task>/task.log beside its artifacts. The run ends with each model's test accuracy and 95%
    interval, the winner, the champion gate, the time per step and links to the reports.
    """
    from catsdogs.components.common import tracking
    from catsdogs.pipelines.local_run import run_local

    storage.check_folder(output, "--output")
    with tracking.pipeline_run(mlflow_uri, tensorboard_root) as tracked:
        run = run_local(parameters, output, runner=runner.value, image=image)
    typer.echo(run.summary())
    typer.echo(tracked.ending(run.run_dir))


@app.command("submit")
@with_run_parameters
def submit_command(
    parameters: RunParameters,
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

    target = Target.from_environment(**{k: values[k] for k in _CONNECTION})
    check_cluster_arguments(parameters.arguments())  # before compiling or any request
    with cluster_package(package, allow_tag) as path:
        result = submit(path, target, parameters.arguments(), run_name=run_name)
    if result.server.warning:
        typer.echo(result.server.warning, err=True)
    typer.echo(f"Pipeline version: {result.uploaded.version_name}")
    typer.echo(f"Run {result.run_id}: {result.url}")


@schedule_app.command("create")
@with_run_parameters
def schedule_create_command(
    parameters: RunParameters,
    cron: Annotated[str, typer.Option(help="'0 3 * * *' (5 fields) or 6 with seconds first.")],
    name: Annotated[str, typer.Option(help="Recurring run name.")] = schedule.DEFAULT_NAME,
    max_concurrency: Annotated[
        int, typer.Option(help="Runs at once, at most.")
    ] = schedule.DEFAULT_MAX_CONCURRENCY,
    catchup: Annotated[bool, typer.Option(help="Backfill every missed interval.")] = False,
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

    kfp_cron = schedule.to_kfp_cron(cron)
    target = Target.from_environment(**{k: values[k] for k in _CONNECTION})
    check_cluster_arguments(parameters.arguments())  # before compiling or any request
    with cluster_package(package, allow_tag, retry_note) as path:
        created = schedule.create(
            path,
            target,
            parameters.arguments(),
            cron=kfp_cron,
            name=name,
            max_concurrency=max_concurrency,
            no_catchup=not catchup,
        )
    if created.server.warning:
        typer.echo(created.server.warning, err=True)
    for old in created.replaced:
        typer.echo(f"Replaced recurring run {old} of the same name ({name})")
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
