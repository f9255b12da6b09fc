"""Create or update the KServe ``InferenceService`` that serves one exported version, by server-side apply.

``storageUri`` is one version's prefix, ``SERVING_URI/vNNNN`` (``export``): each promotion
changes the spec, so KServe rolls out a new revision, and its storage initializer copies only
that version to ``/mnt/models`` (kserve ``pkg/webhook/admission/pod/storage_initializer_injector.go``,
see docs/decisions.md). Two predictor kinds (``PREDICTORS``):

- ``catsdogs`` (default): a custom predictor container running our image and ``catsdogs serve``
  on ``/mnt/models`` (V1 and V2). KServe injects the storage initializer for it because the
  container named ``kserve-container`` carries ``STORAGE_URI`` (``CustomPredictor.GetStorageUri``
  in kserve ``pkg/apis/serving/v1beta1/predictor_custom.go``); the injector then rewrites that
  variable to ``/mnt/models``. The runtime is exactly the code and TensorFlow that the tests and
  ``make image-test`` run.
- ``tensorflow-serving``: KServe's TensorFlow runtime, with ``runtimeVersion`` pinned to
  ``TF_SERVING_VERSION`` (the TF Serving release of the TensorFlow we export with; KServe's default
  image, 2.6.2, rejects our graphs). An older version is refused.

``apply`` sends the manifest as one ``PATCH`` with ``Content-Type: application/apply-patch+yaml``,
``fieldManager=catsdogs`` and ``force=true``: created when missing, updated in place otherwise, so
a rerun is idempotent. The RBAC the deploying account needs, and the predictor's service account,
are in ``components/serve/manifests/rbac.yaml``.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from catsdogs.components.common.errors import CatsdogsError, SettingsError

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
FIELD_MANAGER = "catsdogs"
APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
STORAGE_SCHEMES = ("gs://", "s3://", "pvc://", "oci://", "http://", "https://", "hdfs://")
PREDICTORS = ("catsdogs", "tensorflow-serving")
# TF Serving's release for the TensorFlow we export with (pyproject: tensorflow==2.21.0); a test
# keeps the two in step. Older runtimes reject TF 2.21 graphs (debug_name on VarHandleOp,
# DisableCopyOnRead).
TF_SERVING_VERSION = "2.21.0"
CONTAINER_NAME = (
    "kserve-container"  # the name KServe looks for (constants.InferenceServiceContainerName)
)
MODEL_MOUNT = "/mnt/models"  # constants.DefaultModelLocalMountPath
SERVING_PORT = 8080
DEFAULT_SERVICE_ACCOUNT = "catsdogs-predictor"  # components/serve/manifests/rbac.yaml
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
_RESOURCE = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+/[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_VERSION_PREFIX = re.compile(r"/v\d{4,}/?$")
_RELEASE = re.compile(r"^(\d+)\.(\d+)\.(\d+)(-gpu)?$")


class DeployError(CatsdogsError, RuntimeError):
    """The Kubernetes API refused the InferenceService or could not be reached."""


def release(version: str) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` of a TF Serving tag like ``2.21.0`` or ``2.21.0-gpu``."""
    match = _RELEASE.fullmatch(version)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def check_label(option: str, value: str, example: str) -> None:
    """Refuse ``value`` unless it is a DNS label (namespaces, service accounts)."""
    if not _LABEL.fullmatch(value):
        raise SettingsError(
            f"{option} must be a DNS label (lower case letters, digits and '-', at most 63 "
            f"characters, starting and ending with a letter or digit), got {value!r}; e.g. "
            f"{example}."
        )


@dataclasses.dataclass(frozen=True)
class DeploySettings:
    """What to deploy and with which resources.

    Attributes:
        name: The InferenceService name (a DNS label: lower case, digits, dashes).
        storage_uri: One exported version's prefix, ``SERVING_URI/vNNNN`` (gs://, s3://, pvc://...).
        predictor: ``catsdogs`` (our image and server) or ``tensorflow-serving``.
        image: The image of the ``catsdogs`` predictor (our image, as the pipeline's tasks).
        namespace: The namespace (a DNS label); empty: the pod's own namespace, else ``default``.
        service_account: The predictor's service account, which reads ``storage_uri``.
        canary_traffic_percent: Share of traffic for the new revision (0-100); None: all of it.
        gpus: GPUs per predictor replica (0: CPU only).
        accelerator_type: The GPU resource name (domain/name, e.g. nvidia.com/gpu).
        runtime_version: ``tensorflow-serving`` only: the TF Serving tag; empty: ours, pinned.
        cpu: CPU request and limit per replica.
        memory: Memory request and limit per replica.
        min_replicas: Replicas kept running (0 lets KServe scale to zero).
        max_replicas: Upper bound for the autoscaler.
    """

    name: str
    storage_uri: str
    predictor: str = "catsdogs"
    image: str = ""
    namespace: str = ""
    service_account: str = DEFAULT_SERVICE_ACCOUNT
    canary_traffic_percent: int | None = None
    gpus: int = 0
    accelerator_type: str = "nvidia.com/gpu"
    runtime_version: str = ""
    cpu: str = "1"
    memory: str = "2Gi"
    min_replicas: int = 1
    max_replicas: int = 3

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise SettingsError(
                f"--name must be a DNS label (lower case letters, digits and '-', starting with a "
                f"letter, at most 63 characters), got {self.name!r}; e.g. catsdogs."
            )
        if not self.storage_uri.startswith(STORAGE_SCHEMES):
            raise SettingsError(
                f"The storage URI must be storage the cluster can read ({', '.join(STORAGE_SCHEMES)}), "
                f"got {self.storage_uri!r}. Export to gs://BUCKET/serving/catsdogs (or s3://...) first."
            )
        if not _VERSION_PREFIX.search(self.storage_uri):
            raise SettingsError(
                f"The storage URI must be one exported version, SERVING_URI/vNNNN, got "
                f"{self.storage_uri!r}: a whole SERVING_URI would never change the spec (no new "
                "revision) and every pod would download every version. Pass --version N."
            )
        if self.predictor not in PREDICTORS:
            raise SettingsError(
                f"--predictor must be one of {', '.join(PREDICTORS)}, got {self.predictor!r}."
            )
        if self.namespace:
            check_label("--namespace", self.namespace, "kubeflow-user")
        check_label("--service-account", self.service_account, DEFAULT_SERVICE_ACCOUNT)
        self._check_runtime()
        percent = self.canary_traffic_percent
        if percent is not None and not 0 <= percent <= 100:
            raise SettingsError(f"--canary-traffic-percent must be in [0, 100], got {percent}.")
        if not 0 <= self.gpus <= 16:
            raise SettingsError(f"--gpus must be between 0 and 16, got {self.gpus}.")
        domain = self.accelerator_type.partition("/")[0]
        if not _RESOURCE.fullmatch(self.accelerator_type) or domain.endswith("kubernetes.io"):
            raise SettingsError(
                f"--accelerator-type must be an extended resource name domain/name such as "
                f"nvidia.com/gpu or amd.com/gpu, got {self.accelerator_type!r}; CPU-only is "
                "--gpus 0."
            )
        for label, value in (("--cpu", self.cpu), ("--memory", self.memory)):
            if not _QUANTITY.fullmatch(value):
                raise SettingsError(
                    f"{label} must be a Kubernetes quantity such as 1, 500m or 2Gi, got {value!r}."
                )
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise SettingsError(
                f"Need 0 <= --min-replicas <= --max-replicas and --max-replicas >= 1, got "
                f"{self.min_replicas} and {self.max_replicas}."
            )

    def _check_runtime(self) -> None:
        if self.predictor == "catsdogs":
            if self.runtime_version:
                raise SettingsError(
                    f"--runtime-version {self.runtime_version!r} is for --predictor "
                    "tensorflow-serving; the catsdogs predictor runs --image."
                )
            return
        if not self.runtime_version:
            return
        found, pinned = release(self.runtime_version), release(TF_SERVING_VERSION)
        if found is None or pinned is None or found < pinned:
            raise SettingsError(
                f"--runtime-version must be a TF Serving release like {TF_SERVING_VERSION} or "
                f"{TF_SERVING_VERSION}-gpu, not older than {TF_SERVING_VERSION} (the TensorFlow "
                f"we export with; older runtimes cannot load the graph), got "
                f"{self.runtime_version!r}. Leave it empty for {TF_SERVING_VERSION}."
            )


def default_namespace() -> str:
    """The pod's namespace when running in a cluster, else ``default``."""
    if NAMESPACE_FILE.is_file():
        return NAMESPACE_FILE.read_text().strip() or "default"
    return "default"


def server_command() -> list[str]:
    """The ``catsdogs`` predictor's container command (``make image-test`` runs exactly this)."""
    return [
        "catsdogs",
        "serve",
        "--model",
        MODEL_MOUNT,
        "--host",
        "0.0.0.0",  # noqa: S104 - inside the pod; KServe's queue proxy or Service fronts it
        "--port",
        str(SERVING_PORT),
    ]


def manifest(settings: DeploySettings) -> dict[str, Any]:
    """The ``InferenceService`` for ``settings`` (a plain dict, ready for YAML or JSON)."""
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": settings.cpu, "memory": settings.memory},
        "limits": {"cpu": settings.cpu, "memory": settings.memory},
    }
    if settings.gpus:
        resources["limits"][settings.accelerator_type] = str(settings.gpus)
        resources["requests"][settings.accelerator_type] = str(settings.gpus)
    predictor: dict[str, Any] = {
        "minReplicas": settings.min_replicas,
        "maxReplicas": settings.max_replicas,
        "serviceAccountName": settings.service_account,
    }
    if settings.predictor == "catsdogs":
        from catsdogs.components.common import config

        predictor["containers"] = [
            {
                "name": CONTAINER_NAME,
                "image": settings.image or config.image(),
                "command": server_command(),
                "env": [{"name": "STORAGE_URI", "value": settings.storage_uri}],
                "ports": [{"containerPort": SERVING_PORT, "protocol": "TCP"}],
                "resources": resources,
            }
        ]
    else:
        version = settings.runtime_version or TF_SERVING_VERSION
        if settings.gpus and not version.endswith("-gpu"):
            version += "-gpu"
        predictor["model"] = {
            "modelFormat": {"name": "tensorflow"},
            "storageUri": settings.storage_uri,
            "runtimeVersion": version,
            "resources": resources,
        }
    if settings.canary_traffic_percent is not None:
        predictor["canaryTrafficPercent"] = settings.canary_traffic_percent
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {
            "name": settings.name,
            "namespace": settings.namespace or default_namespace(),
            "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER},
        },
        "spec": {"predictor": predictor},
    }


def storage_uri_of(manifest_body: dict[str, Any]) -> str:
    """The storageUri an InferenceService manifest applies (either predictor kind)."""
    predictor = manifest_body["spec"]["predictor"]
    if "model" in predictor:
        return str(predictor["model"]["storageUri"])
    env = {e["name"]: e["value"] for e in predictor["containers"][0]["env"]}
    return env["STORAGE_URI"]


def api_client(host: str | None = None, token: str | None = None) -> Any:
    """A ``kubernetes`` ApiClient: ``host`` (+ bearer ``token``), in-cluster config, or kubeconfig."""
    from kubernetes import client, config

    if host:
        configuration = client.Configuration()
        configuration.host = host
        if token:
            configuration.api_key = {"authorization": token}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(configuration)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config()
        except (config.ConfigException, FileNotFoundError) as error:
            raise SettingsError(
                f"No Kubernetes cluster to deploy to ({error}). Run in the cluster, set a "
                "kubeconfig context (kubectl config use-context ...) or pass --host."
            ) from error
    return client.ApiClient()


def apply(body: dict[str, Any], client: Any) -> dict[str, Any]:
    """Server-side apply ``body`` (an InferenceService) and return the object the API answers.

    Raises:
        DeployError: The API refused (the message names the status and, for 403, the RBAC fix)
            or could not be reached.
    """
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    try:
        result = client.call_api(
            f"/apis/{GROUP}/{VERSION}/namespaces/{{namespace}}/{PLURAL}/{{name}}",
            "PATCH",
            path_params={"namespace": namespace, "name": name},
            query_params=[("fieldManager", FIELD_MANAGER), ("force", "true")],
            header_params={"Content-Type": APPLY_CONTENT_TYPE, "Accept": "application/json"},
            body=body,
            response_type="object",
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )
    except ApiException as error:
        hint = {
            403: " Grant the step's service account the Role in "
            "components/serve/manifests/rbac.yaml (inferenceservices: get, create, patch).",
            404: " Is KServe installed (kubectl get crd inferenceservices.serving.kserve.io)?",
        }.get(int(error.status or 0), "")
        raise DeployError(
            f"Applying InferenceService {namespace}/{name} failed: {error.status} {error.reason}."
            f"{hint}"
        ) from error
    except HTTPError as error:
        raise DeployError(
            f"Could not reach the Kubernetes API at {client.configuration.host} ({error}); "
            "check the cluster context or --host."
        ) from error
    return dict(result)
