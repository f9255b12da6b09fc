"""Upload the compiled pipeline to Kubeflow Pipelines and start a run.

Connecting follows ``kfp.Client``'s standard ways, in this order:

1. ``--host`` / ``KFP_HOST`` with ``KFP_TOKEN`` in the environment (a bearer token made outside,
   e.g. by ``gcloud auth print-access-token`` behind IAP, or a Dex/OIDC token);
2. ``--host`` / ``KFP_HOST`` alone: a port-forwarded or open endpoint
   (``kubectl port-forward -n kubeflow svc/ml-pipeline-ui 8080:80`` then ``http://localhost:8080``);
3. no host, inside a pod of the cluster: the in-cluster service and the projected service-account
   token (``KF_PIPELINES_SA_TOKEN_PATH``, read by kfp itself);
4. no host, outside: your kubeconfig's current context through the Kubernetes API proxy.

``kfp.Client(namespace=...)`` is the namespace where Kubeflow Pipelines itself runs (kfp builds the
in-cluster host ``ml-pipeline.<ns>.svc.cluster.local`` and the kube-proxy path from it), so the
client stays on ``Target.kfp_namespace`` (default ``kubeflow``) and the user's profile namespace
(``--namespace``/``KFP_NAMESPACE``, or the pod's own namespace that kfp reads in a Kubeflow
notebook) goes on each call: pipeline lookup and upload, experiments, recurring-run lists. Runs and
recurring runs belong to their experiment's namespace. A multi-user server with no profile known is
refused before any upload.

The server's version is read from its healthz (``tag_name``): the pipeline needs a backend of at
least 2.17.0 (nested DAG status, sub-DAG outputs); an older or unknown one gets a warning.

Uploading is repeatable: the first time creates the pipeline, later times add a new version.
Credentials never become pipeline parameters. A cluster run's champion, checkpoint root and
weights file must be gs:// or s3:// URIs: a local path would land on the pod's throw-away disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catsdogs.components.common import redaction
from catsdogs.components.common.errors import CatsdogsError, SettingsError, SourceError
from catsdogs.pipelines.pipeline import PIPELINE_NAME

if TYPE_CHECKING:
    import kfp

DEFAULT_EXPERIMENT = "catsdogs"
DEFAULT_KFP_NAMESPACE = "kubeflow"
MIN_SERVER_VERSION = (2, 17, 0)
# Pipeline roots KFP's launcher can write to (MinIO/S3 clusters use s3:// or minio://).
PIPELINE_ROOT_SCHEMES = ("gs://", "s3://", "minio://")
# Object storage the pods read and write through components/common/storage.py (s3://: MinIO or S3).
CLUSTER_STORAGE_SCHEMES = ("gs://", "s3://")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$"
)
_VERSION = re.compile(r"^v?([0-9]+)\.([0-9]+)\.([0-9]+)")


class KfpError(CatsdogsError, RuntimeError):
    """Kubeflow Pipelines could not be reached or refused a request (the message says how to fix)."""


def _server_message(error: Any) -> str:
    """The server's own explanation from an ``ApiException`` body (grpc-gateway JSON or text)."""
    body = error.body.decode("utf-8", "replace") if isinstance(error.body, bytes) else error.body
    text = str(body or "").strip()
    try:
        payload = json.loads(text)
    except ValueError:
        return " ".join(text.split())
    if isinstance(payload, dict):
        # grpc-gateway: {"code", "message"}; the upload handlers: {"error_message", ...}.
        keys = ("message", "error_message", "error")
        return str(next((payload[key] for key in keys if payload.get(key)), text))
    return text


@contextlib.contextmanager
def refused_as_kfp_error() -> Iterator[None]:
    """Turn the KFP API's refusal of a request into a :class:`KfpError` with the server's message."""
    from kfp_server_api.exceptions import ApiException

    try:
        yield
    except ApiException as error:
        message = _server_message(error)
        raise KfpError(
            f"Kubeflow Pipelines refused the request: HTTP {error.status} {error.reason}"
            + (f": {message}" if message else ".")
        ) from error


@dataclasses.dataclass(frozen=True)
class Target:
    """Where to send the pipeline: the KFP endpoint, namespaces, names and run settings.

    Attributes:
        host: The KFP API endpoint (None: in-cluster service or kubeconfig proxy).
        namespace: The user's profile namespace on a multi-user cluster (None: single-user, or
            the pod's own namespace that kfp reads in a Kubeflow notebook).
        token: A bearer token made outside.
        experiment: The experiment runs go to (created if missing).
        pipeline_name: The pipeline's name in KFP.
        kfp_namespace: The namespace Kubeflow Pipelines itself runs in (in-cluster host, proxy).
        pipeline_root: Where the run's artifacts go (gs://, s3:// or minio://; None: the
            server's default root).
        service_account: The Kubernetes service account of the run's pods (None: the default).

    Raises:
        SettingsError: The host is not an http(s):// URL, a name is empty or malformed, or the
            pipeline root is not object storage.
    """

    host: str | None = None
    namespace: str | None = None
    token: str | None = None
    experiment: str = DEFAULT_EXPERIMENT
    pipeline_name: str = PIPELINE_NAME
    kfp_namespace: str = DEFAULT_KFP_NAMESPACE
    pipeline_root: str | None = None
    service_account: str | None = None

    def __post_init__(self) -> None:
        if self.host is not None and not self.host.startswith(("http://", "https://")):
            raise SettingsError(
                f"host must start with http:// or https://, got {self.host!r}; "
                "e.g. --host http://localhost:8080 after a port-forward."
            )
        for name in ("experiment", "pipeline_name"):
            if not getattr(self, name).strip():
                raise SettingsError(f"{name} must not be empty.")
        for name in ("namespace", "kfp_namespace"):
            value = getattr(self, name)
            if value is not None and not _DNS_LABEL.match(value):
                raise SettingsError(
                    f"{name} must be a Kubernetes namespace name (lower case, digits, '-'), "
                    f"got {value!r}."
                )
        if self.pipeline_root is not None and not self.pipeline_root.startswith(
            PIPELINE_ROOT_SCHEMES
        ):
            raise SettingsError(
                f"pipeline_root must be object storage the pods can reach "
                f"({', '.join(PIPELINE_ROOT_SCHEMES)}), got {self.pipeline_root!r}; "
                "e.g. --pipeline-root gs://BUCKET/pipeline-root."
            )
        if self.service_account is not None and not _DNS_SUBDOMAIN.match(self.service_account):
            raise SettingsError(
                f"service_account must be a Kubernetes service account name, "
                f"got {self.service_account!r}; e.g. --service-account default-editor."
            )

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
class Server:
    """What the KFP API server says of itself (``/apis/v2beta1/healthz``)."""

    multi_user: bool
    version: str

    @property
    def warning(self) -> str | None:
        """A warning when the server is older than the pipeline needs, or its version unknown."""
        needed = ".".join(map(str, MIN_SERVER_VERSION))
        match = _VERSION.match(self.version)
        if match and tuple(int(part) for part in match.groups()) >= MIN_SERVER_VERSION:
            return None
        state = f"is version {self.version}" if match else f"reports no version ({self.version!r})"
        return (
            f"Warning: the Kubeflow Pipelines server {state}; this pipeline needs {needed} or "
            "later (nested DAG status, sub-DAG outputs): upgrade the backend before relying on it."
        )


@dataclasses.dataclass(frozen=True)
class Session:
    """A connected client, what the server said of itself, and the user's namespace on calls."""

    client: kfp.Client
    server: Server
    namespace: str | None


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
    """A ``kfp.Client`` for the target, on KFP's own namespace (never the user's profile).

    Raises:
        KfpError: The endpoint did not answer (the message names the host and the fix).
    """
    import kfp
    from kfp_server_api.exceptions import ApiException

    if target.host:
        _probe(target.host)
    try:
        return kfp.Client(
            host=target.host, namespace=target.kfp_namespace, existing_token=target.token
        )
    except (ApiException, TimeoutError, OSError) as error:
        where = target.host or "the in-cluster/kubeconfig endpoint"
        raise KfpError(
            f"Could not reach Kubeflow Pipelines at {where} ({type(error).__name__}); "
            "pass --host or set KFP_HOST (e.g. kubectl port-forward -n kubeflow "
            "svc/ml-pipeline-ui 8080:80, then --host http://localhost:8080)."
        ) from error


def server_info(client: kfp.Client) -> Server:
    """Read multi-user mode and version (``tag_name``, which kfp's own model drops) from healthz."""
    with refused_as_kfp_error():
        response = client.healthzs.healthz_service_get_healthz(_preload_content=False)
    try:
        payload = json.loads(response.data or b"{}")
    except ValueError:
        payload = {}
    return Server(bool(payload.get("multi_user")), str(payload.get("tag_name") or "unknown"))


def open_session(target: Target) -> Session:
    """Connect, read the server's mode and version, and settle the namespace of the calls.

    Raises:
        KfpError: KFP could not be reached or refused the healthz request.
        SettingsError: The server is multi-user and no profile namespace is known.
    """
    client = connect(target)
    server = server_info(client)
    # kfp fills its user namespace from the pod's service account in a Kubeflow notebook.
    detected = client.get_user_namespace() if target.kfp_namespace == DEFAULT_KFP_NAMESPACE else ""
    namespace = target.namespace or detected or None
    if server.multi_user and not namespace:
        raise SettingsError(
            "Kubeflow Pipelines runs in multi-user mode and no profile namespace is known: pass "
            "--namespace YOUR_PROFILE or set KFP_NAMESPACE (e.g. kubeflow-user-example-com)."
        )
    return Session(client, server, namespace)


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
