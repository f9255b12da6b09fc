"""Upload the compiled pipeline to Kubeflow Pipelines and start a run.

Connecting (the target, ``kfp.Client``'s standard ways, namespaces, the server's version) is in
``pipelines/kfp_session.py``; its names are re-exported here.

Uploading is repeatable: the first time creates the pipeline, later times add a new version.
Credentials never become pipeline parameters. A cluster run's champion, checkpoint root and
weights file must be gs:// or s3:// URIs: a local path would land on the pod's throw-away disk.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
from pathlib import Path
from typing import Any

from catsdogs.components.common import redaction
from catsdogs.components.common.errors import SettingsError, SourceError
from catsdogs.pipelines.kfp_session import (
    DEFAULT_EXPERIMENT,
    DEFAULT_KFP_NAMESPACE,
    MIN_SERVER_VERSION,
    PIPELINE_ROOT_SCHEMES,
    KfpError,
    Server,
    Session,
    Target,
    connect,
    open_session,
    refused_as_kfp_error,
    server_info,
)

__all__ = [
    "DEFAULT_EXPERIMENT",
    "DEFAULT_KFP_NAMESPACE",
    "MIN_SERVER_VERSION",
    "PIPELINE_ROOT_SCHEMES",
    "KfpError",
    "Server",
    "Session",
    "Submitted",
    "Target",
    "Uploaded",
    "check_cluster_arguments",
    "connect",
    "experiment_id",
    "open_session",
    "refused_as_kfp_error",
    "server_info",
    "submit",
    "upload",
]

# Object storage a cluster run's own locations may use (champion, checkpoints, serving, weights).
CLUSTER_STORAGE_SCHEMES = ("gs://", "s3://")


@dataclasses.dataclass(frozen=True)
class Uploaded:
    """The pipeline and version that an upload created."""

    pipeline_id: str
    version_id: str
    version_name: str
    new_pipeline: bool


@dataclasses.dataclass(frozen=True)
class Submitted:
    """A started run."""

    run_id: str
    url: str
    experiment_id: str
    uploaded: Uploaded
    server: Server


def _pipeline_id(session: Session, name: str) -> str | None:
    """The id of the pipeline called ``name`` in the session's namespace, if there is one."""
    name_filter = json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
    )
    found = session.client.list_pipelines(
        filter=name_filter, page_size=2, namespace=session.namespace
    ).pipelines
    if found and len(found) > 1:
        raise KfpError(f"Kubeflow Pipelines holds {len(found)} pipelines named {name!r}.")
    return str(found[0].pipeline_id) if found else None


def upload(session: Session, package: str | Path, target: Target) -> Uploaded:
    """Upload the package as a new pipeline, or as a new version when the name exists.

    Args:
        session: A connected session.
        package: The compiled pipeline YAML.
        target: Names the pipeline.

    Returns:
        The pipeline and version ids.
    """
    client = session.client
    digest = hashlib.sha256(Path(package).read_bytes()).hexdigest()[:10]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    version_name = f"{target.pipeline_name}-{stamp}-{digest}"
    pipeline_id = _pipeline_id(session, target.pipeline_name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(
            str(package),
            pipeline_name=target.pipeline_name,
            description="Dogs vs cats: prepare, train (scratch, transfer), evaluate, render.",
            namespace=session.namespace,
        )
        versions = client.list_pipeline_versions(
            pipeline.pipeline_id, sort_by="created_at desc", page_size=1
        )
        if not versions.pipeline_versions:
            raise KfpError(
                f"KFP created pipeline {pipeline.pipeline_id} but listed no version for it."
            )
        version = versions.pipeline_versions[0]
        return Uploaded(
            pipeline.pipeline_id, version.pipeline_version_id, version.display_name, True
        )
    version = client.upload_pipeline_version(
        str(package), pipeline_version_name=version_name, pipeline_id=pipeline_id
    )
    return Uploaded(pipeline_id, version.pipeline_version_id, version_name, False)


def experiment_id(session: Session, target: Target) -> str:
    """Get or create the target's experiment in the session's namespace; returns its id."""
    experiment = session.client.create_experiment(target.experiment, namespace=session.namespace)
    return str(experiment.experiment_id)


def check_cluster_arguments(arguments: dict[str, Any]) -> None:
    """Refuse paths of this machine in a cluster run, and URLs that carry credentials.

    The pods cannot see this machine's paths, or lose what they write there. A parameter holding
    credentials (``user:password@``, a signed URL's signature, a token) would be stored by KFP as
    a plain run parameter and logged by every step's launcher: it is refused, never sent.

    Raises:
        SourceError: The source is a local path.
        SettingsError: The champion, checkpoint root, serving URI or weights file is a local path,
            or a parameter carries credentials.
    """
    source = str(arguments.get("source", ""))
    for name, value in arguments.items():
        if isinstance(value, str) and redaction.has_secret(value):
            raise SettingsError(
                f"{name} {redaction.redact(value)} carries credentials (user:password@, a "
                "signature or a token): a cluster run's parameters are stored by Kubeflow "
                "Pipelines and logged by every step in clear, and a signed URL expires before a "
                "scheduled run uses it. Copy the data to a bucket and pass its gs:// or s3:// "
                "URI (the pods read it with their own credentials), or a URL that needs none."
            )
    if not source.startswith((*CLUSTER_STORAGE_SCHEMES, "https://", "http://")):
        raise SourceError(
            f"source {source!r} is not reachable from the cluster: expected a gs:// or s3:// "
            "prefix or an https:// URL; upload the data first (e.g. gsutil -m cp -r DIR "
            "gs://BUCKET/raw, or aws s3 cp --recursive DIR s3://BUCKET/raw)."
        )
    weights = str(arguments.get("transfer_weights") or "imagenet")
    if weights not in ("imagenet", "none") and not weights.startswith(CLUSTER_STORAGE_SCHEMES):
        raise SettingsError(
            f"transfer_weights {weights!r} is a local path the pods cannot read: use imagenet (baked into "
            "the image) or a gs://BUCKET/....h5 or s3://BUCKET/....h5 file."
        )
    for name in ("champion_uri", "checkpoint_root", "serving_uri"):
        value = str(arguments.get(name) or "")
        if value and not value.startswith(CLUSTER_STORAGE_SCHEMES):
            raise SettingsError(
                f"{name} {value!r} is a local path, which a cluster run would keep on a pod's "
                "throw-away disk: use gs://BUCKET/... or s3://BUCKET/... (or leave it empty)."
            )


def submit(
    package: str | Path,
    target: Target,
    arguments: dict[str, Any],
    run_name: str | None = None,
) -> Submitted:
    """Upload the compiled pipeline (new version if it exists) and start a run in the experiment.

    Args:
        package: The compiled pipeline YAML.
        target: Where, under which names, with which pipeline root and service account.
        arguments: Pipeline parameters (never credentials).
        run_name: The run's display name (default: pipeline name and UTC time).

    Returns:
        The run id, its URL in the KFP UI and what the server said of itself.

    Raises:
        SourceError: The source is a local path the cluster cannot read.
        SettingsError: The champion, checkpoint root or weights is a local path, or the server
            is multi-user and no namespace is known.
        KfpError: KFP could not be reached or refused a request.
    """
    check_cluster_arguments(arguments)
    session = open_session(target)
    with refused_as_kfp_error():
        uploaded = upload(session, package, target)
        experiment = experiment_id(session, target)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
        run = session.client.run_pipeline(
            experiment_id=experiment,
            job_name=run_name or f"{target.pipeline_name}-{stamp}",
            params=arguments,
            pipeline_id=uploaded.pipeline_id,
            version_id=uploaded.version_id,
            pipeline_root=target.pipeline_root,
            service_account=target.service_account,
        )
    return Submitted(
        run_id=run.run_id,
        url=target.url(f"runs/details/{run.run_id}"),
        experiment_id=experiment,
        uploaded=uploaded,
        server=session.server,
    )
