"""``catsdogs compile``, and the compiled package that ``submit`` and ``schedule create`` send.

A cluster run wants its image by digest (``image@sha256:...``, what ``make images`` records in
``build/image.ref``): compile, submit and schedule refuse a tag alone unless ``--allow-tag``, which
prints a loud warning instead. The compile options' defaults come from
:class:`~catsdogs.pipelines.options.PipelineOptions`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from catsdogs.components.common.errors import OutputConflictError, SettingsError
from catsdogs.pipelines.options import PipelineOptions

app = typer.Typer()
_OPTIONS = PipelineOptions()

_AcceleratorType = Annotated[str, typer.Option(help="Accelerator each GPU task requests.")]
_AcceleratorCount = Annotated[int, typer.Option(help="Accelerators per GPU task.")]
_NodeSelector = Annotated[
    list[str] | None, typer.Option(help="label=value for GPU tasks' node selector (repeatable).")
]
_Toleration = Annotated[
    list[str] | None, typer.Option(help="key[=value][:effect] toleration for GPU tasks (repeat).")
]
_Retries = Annotated[int, typer.Option(help="Retries of a GPU task (spot preemption).")]
_BackoffMax = Annotated[
    str, typer.Option(help="Retry window from a GPU task's first attempt (Argo), e.g. 86400s.")
]
_S3Endpoint = Annotated[str, typer.Option(help="AWS_ENDPOINT_URL of every step (s3://, MinIO).")]
_S3Secret = Annotated[str, typer.Option(help="Secret with accesskey, secretkey for s3:// steps.")]
# Tracking (docs/tracking.md): compile-time for a cluster, per run for `catsdogs run`.
MlflowUriOption = Annotated[
    str, typer.Option(help="MLflow server every task logs to (http://...).")
]
TensorboardRootOption = Annotated[
    str, typer.Option(help="Folder or bucket the trainers copy TensorBoard logs to.")
]
_ScratchStorage = Annotated[
    str, typer.Option(help="Disk (ephemeral volume) per task for its own files, e.g. 4Gi; 0: none.")
]
_WorkflowTtl = Annotated[
    int, typer.Option(help="Seconds Argo keeps a finished run's workflow and pods; 0: forever.")
]
_Deadline = Annotated[
    int,
    typer.Option(help="Seconds after which Argo stops a run (a hung run frees GPUs); 0: never."),
]
RetryNoteOption = Annotated[
    bool, typer.Option(help="Exit handler that prints `catsdogs runs retry RUN_ID` on failure.")
]
AllowTagOption = Annotated[
    bool, typer.Option(help="Accept an image pinned by tag, not digest (warns loudly).")
]
PackageOption = Annotated[
    Path | None,
    typer.Option(help="A compiled pipeline YAML; default: compile now with default options."),
]


def check_output_file(output: Path) -> None:
    """Refuse a ``compile --output`` that is a folder or lies below a file, saying what to give."""
    if output.is_dir():
        raise OutputConflictError(
            f"--output {output} is a folder; give the YAML file to write, e.g. "
            f"--output {output / 'catsdogs.yaml'}."
        )
    existing = next((parent for parent in output.parents if parent.exists()), None)
    if existing is not None and not existing.is_dir():
        raise OutputConflictError(
            f"--output {output} lies below {existing}, which is a file; choose another path."
        )


def _check_images(images: set[str], allow_tag: bool) -> None:
    from catsdogs.pipelines.compile import check_image, tag_warning

    for image in sorted(images):
        check_image(image, require_digest=not allow_tag)
        if warning := tag_warning(image):
            typer.echo(warning, err=True)


@contextlib.contextmanager
def cluster_package(
    package: Path | None, allow_tag: bool, retry_note: bool | None = None
) -> Iterator[Path]:
    """The given compiled YAML (its images and exit handler checked), or one compiled now.

    ``retry_note``: None takes the package as it is (compiling now with the default).

    Raises:
        SettingsError: The file is missing, its image is a tag without ``--allow-tag``, or it
            was compiled with(out) the retry note that the command asks for.
    """
    import tempfile

    from catsdogs.pipelines.compile import compile_pipeline, package_images

    if package is None:
        from catsdogs.components.common import config

        _check_images({config.image()}, allow_tag)
        options = PipelineOptions(
            retry_note=_OPTIONS.retry_note if retry_note is None else retry_note
        )
        with tempfile.TemporaryDirectory() as folder:
            yield compile_pipeline(Path(folder) / "catsdogs.yaml", options, not allow_tag)
        return
    if not package.is_file():
        raise SettingsError(
            f"--package {package} does not exist; run `catsdogs compile --output FILE` first."
        )
    _check_images(package_images(package), allow_tag)
    has_note = "comp-retry-note:" in package.read_text()
    if retry_note is not None and has_note != retry_note:
        flag = "--retry-note" if retry_note else "--no-retry-note"
        raise SettingsError(
            f"--package {package} was compiled {'without' if retry_note else 'with'} the retry "
            f"note that {flag} asks for; recompile with `catsdogs compile {flag}` or drop {flag}."
        )
    yield package


@app.command("compile")
def compile_command(
    output: Annotated[Path, typer.Option(help="Where to write the compiled pipeline YAML.")],
    accelerator_type: _AcceleratorType = _OPTIONS.accelerator_type,
    accelerator_count: _AcceleratorCount = _OPTIONS.accelerator_count,
    node_selector: _NodeSelector = None,
    toleration: _Toleration = None,
    retries: _Retries = _OPTIONS.retries,
    backoff_max_duration: _BackoffMax = _OPTIONS.backoff_max_duration,
    serving_gpus: Annotated[
        int, typer.Option(help="GPUs per replica of the deployed InferenceService (0: CPU).")
    ] = _OPTIONS.serving_gpus,
    serving_predictor: Annotated[
        str, typer.Option(help="The InferenceService's predictor: catsdogs or tensorflow-serving.")
    ] = _OPTIONS.serving_predictor,
    serving_namespace: Annotated[
        str, typer.Option(help="Namespace of the InferenceService; default: the run's own.")
    ] = _OPTIONS.serving_namespace,
    serving_service_account: Annotated[
        str, typer.Option(help="Predictor service account that can read SERVING_URI.")
    ] = _OPTIONS.serving_service_account,
    serving_canary_percent: Annotated[
        int, typer.Option(help="Traffic share for a new version's revision; -1: all of it.")
    ] = _OPTIONS.serving_canary_percent,
    s3_endpoint: _S3Endpoint = _OPTIONS.s3_endpoint,
    s3_secret: _S3Secret = _OPTIONS.s3_secret,
    scratch_storage: _ScratchStorage = _OPTIONS.scratch_storage,
    workflow_ttl: _WorkflowTtl = _OPTIONS.workflow_ttl_seconds,
    active_deadline: _Deadline = _OPTIONS.active_deadline_seconds,
    retry_note: RetryNoteOption = _OPTIONS.retry_note,
    allow_tag: AllowTagOption = False,
    mlflow_uri: MlflowUriOption = _OPTIONS.mlflow_uri,
    tensorboard_root: TensorboardRootOption = _OPTIONS.tensorboard_root,
) -> None:
    """Compile the pipeline for a cluster (GPU requests, retries, guards; image by digest)."""
    from catsdogs.components.common import config
    from catsdogs.pipelines.compile import compile_pipeline
    from catsdogs.pipelines.options import Toleration, parse_node_selector

    options = PipelineOptions(
        accelerator_type=accelerator_type,
        accelerator_count=accelerator_count,
        node_selector=parse_node_selector(node_selector or []),
        tolerations=tuple(Toleration.parse(item) for item in toleration or []),
        retries=retries,
        backoff_max_duration=backoff_max_duration,
        serving_gpus=serving_gpus,
        serving_predictor=serving_predictor,
        serving_namespace=serving_namespace,
        serving_service_account=serving_service_account,
        serving_canary_percent=serving_canary_percent,
        s3_endpoint=s3_endpoint,
        s3_secret=s3_secret,
        scratch_storage=scratch_storage,
        workflow_ttl_seconds=workflow_ttl,
        active_deadline_seconds=active_deadline,
        retry_note=retry_note,
        mlflow_uri=mlflow_uri,
        tensorboard_root=tensorboard_root,
    )
    check_output_file(output)
    _check_images({config.image()}, allow_tag)
    path = compile_pipeline(output, options, require_digest=not allow_tag)
    typer.echo(f"Compiled pipeline: {path}")
