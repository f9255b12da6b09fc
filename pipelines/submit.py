"""Upload the compiled pipeline to Kubeflow Pipelines and start a run.

Connecting follows ``kfp.Client``'s standard ways, in this order:

1. ``--host`` / ``KFP_HOST`` with ``KFP_TOKEN`` in the environment (a bearer token made outside,
   e.g. by ``gcloud auth print-access-token`` behind IAP, or a Dex/OIDC token);
2. ``--host`` / ``KFP_HOST`` alone: a port-forwarded or open endpoint
   (``kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`` then ``http://localhost:8080``);
3. no host, inside a pod of the cluster: the in-cluster service and the projected service-account
   token (``KF_PIPELINES_SA_TOKEN_PATH``, read by kfp itself);
4. no host, outside: your kubeconfig's current context through the Kubernetes API proxy.

Uploading is repeatable: the first time creates the pipeline, later times add a new version.
Credentials never become pipeline parameters.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catsdogs.components.common.errors import CatsdogsError, SettingsError, SourceError
from catsdogs.pipelines.pipeline import PIPELINE_NAME

if TYPE_CHECKING:
    import kfp

DEFAULT_EXPERIMENT = "catsdogs"


class KfpError(CatsdogsError, RuntimeError):
    """Kubeflow Pipelines could not be reached or refused a request (the message says how to fix)."""


@contextlib.contextmanager
def refused_as_kfp_error() -> Iterator[None]:
    """Turn the KFP API's refusal of a request (an HTTP error status) into a :class:`KfpError`."""
    from kfp_server_api.exceptions import ApiException

    try:
        yield
    except ApiException as error:
        raise KfpError(
            f"Kubeflow Pipelines refused the request: HTTP {error.status} {error.reason}."
        ) from error


@dataclasses.dataclass(frozen=True)
class Target:
    """Where to send the pipeline: the KFP endpoint, namespace and names.

    Raises:
        SettingsError: The host is not an http(s):// URL, or a name is empty.
    """

    host: str | None = None
    namespace: str | None = None
    token: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    pipeline_name: str = PIPELINE_NAME

    def __post_init__(self) -> None:
        if self.host is not None and not self.host.startswith(("http://", "https://")):
            raise SettingsError(
                f"host must start with http:// or https://, got {self.host!r}; "
                "e.g. --host http://localhost:8080 after a port-forward."
            )
        for name in ("experiment", "pipeline_name"):
            if not getattr(self, name).strip():
                raise SettingsError(f"{name} must not be empty.")

    @classmethod
    def from_environment(cls, **given: Any) -> Target:
        """Fill host, namespace and token from ``KFP_HOST``/``KFP_NAMESPACE``/``KFP_TOKEN``."""
        from catsdogs.components.common import config

        values = {key: value for key, value in given.items() if value is not None}
        values.setdefault("host", config.kfp_host())
        values.setdefault("namespace", config.kfp_namespace())
        values.setdefault("token", config.kfp_token())
        return cls(**values)

    def url(self, path: str) -> str:
        """A link into the KFP UI (relative ``/pipeline/...`` when running in the cluster)."""
        prefix = self.host.rstrip("/") if self.host else "/pipeline"
        return f"{prefix}/#/{path}"


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


def _probe(host: str) -> None:
    """Fail in seconds, not after kfp's five slow retries, when nothing listens at ``host``."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(f"{host.rstrip('/')}/apis/v2beta1/healthz", timeout=10).close()
    except urllib.error.HTTPError:
        return  # something answered (e.g. a login redirect or 401): let kfp handle it
    except (urllib.error.URLError, OSError) as error:
        raise KfpError(
            f"Could not reach Kubeflow Pipelines at {host} ({error}); check --host/KFP_HOST "
            "(e.g. kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80, then "
            "--host http://localhost:8080)."
        ) from error


def connect(target: Target) -> kfp.Client:
    """A ``kfp.Client`` for the target.

    Raises:
        KfpError: The endpoint did not answer (the message names the host and the fix).
    """
    import kfp
    from kfp_server_api.exceptions import ApiException

    if target.host:
        _probe(target.host)
    try:
        return kfp.Client(
            host=target.host,
            namespace=target.namespace or "kubeflow",
            existing_token=target.token,
        )
    except (ApiException, TimeoutError, OSError) as error:
        where = target.host or "the in-cluster/kubeconfig endpoint"
        raise KfpError(
            f"Could not reach Kubeflow Pipelines at {where} ({type(error).__name__}); "
            "pass --host or set KFP_HOST (e.g. kubectl port-forward -n kubeflow "
            "svc/ml-pipeline-ui 8080:80, then --host http://localhost:8080)."
        ) from error


def upload(client: kfp.Client, package: str | Path, target: Target) -> Uploaded:
    """Upload the package as a new pipeline, or as a new version when the name exists.

    Args:
        client: A connected client.
        package: The compiled pipeline YAML.
        target: Names the pipeline.

    Returns:
        The pipeline and version ids.
    """
    digest = hashlib.sha256(Path(package).read_bytes()).hexdigest()[:10]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    version_name = f"{target.pipeline_name}-{stamp}-{digest}"
    pipeline_id = client.get_pipeline_id(target.pipeline_name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(
            str(package),
            pipeline_name=target.pipeline_name,
            description="Dogs vs cats: prepare, train (scratch, transfer), evaluate, render.",
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


def experiment_id(client: kfp.Client, target: Target) -> str:
    """Get or create the target's experiment; returns its id."""
    experiment = client.create_experiment(target.experiment, namespace=target.namespace)
    return str(experiment.experiment_id)


def check_remote_source(arguments: dict[str, Any]) -> None:
    """Refuse a local source path for a cluster run: the pods cannot see this machine's files."""
    source = str(arguments.get("source", ""))
    if not source.startswith(("gs://", "https://", "http://")):
        raise SourceError(
            f"source {source!r} is not reachable from the cluster: expected a gs:// prefix or an "
            "https:// URL; upload the data first (e.g. gsutil -m cp -r DIR gs://BUCKET/raw)."
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
        target: Where and under which names.
        arguments: Pipeline parameters (never credentials).
        run_name: The run's display name (default: pipeline name and UTC time).

    Returns:
        The run id and its URL in the KFP UI.

    Raises:
        SourceError: The source is a local path the cluster cannot read.
        KfpError: KFP could not be reached or refused a request.
    """
    check_remote_source(arguments)
    client = connect(target)
    with refused_as_kfp_error():
        uploaded = upload(client, package, target)
        experiment = experiment_id(client, target)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
        run = client.run_pipeline(
            experiment_id=experiment,
            job_name=run_name or f"{target.pipeline_name}-{stamp}",
            params=arguments,
            pipeline_id=uploaded.pipeline_id,
            version_id=uploaded.version_id,
        )
    return Submitted(
        run_id=run.run_id,
        url=target.url(f"runs/details/{run.run_id}"),
        experiment_id=experiment,
        uploaded=uploaded,
    )
