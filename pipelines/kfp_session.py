"""Connecting to Kubeflow Pipelines: the target, the session, the server's refusals.

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
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from catsdogs.components.common.errors import CatsdogsError, SettingsError
from catsdogs.pipelines.pipeline import PIPELINE_NAME

if TYPE_CHECKING:
    import kfp

DEFAULT_EXPERIMENT = "catsdogs"
DEFAULT_KFP_NAMESPACE = "kubeflow"
MIN_SERVER_VERSION = (2, 17, 0)
# Pipeline roots KFP's launcher can write to (MinIO/S3 clusters use s3:// or minio://).
PIPELINE_ROOT_SCHEMES = ("gs://", "s3://", "minio://")
# Object storage the pods read and write through components/common/storage.py (s3://: MinIO or S3).
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
