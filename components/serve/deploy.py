"""Create or update the KServe ``InferenceService`` that serves SERVING_URI, by server-side apply.

The manifest (``manifest``) names the TensorFlow model format, so KServe picks its TensorFlow
Serving runtime, which loads the highest numbered version under ``storageUri``. ``apply`` sends it
as one ``PATCH`` with ``Content-Type: application/apply-patch+yaml``, ``fieldManager=catsdogs`` and
``force=true``: the object is created when missing and updated in place otherwise, so a rerun is
idempotent and fields owned by other managers (e.g. KServe's defaults) are left alone.

RBAC: the service account running the step needs, in the target namespace::

    apiVersion: rbac.authorization.k8s.io/v1
    kind: Role
    metadata: {name: catsdogs-deployer, namespace: NAMESPACE}
    rules:
      - apiGroups: ["serving.kserve.io"]
        resources: ["inferenceservices"]
        verbs: ["get", "create", "patch"]   # apply = patch; the first apply also needs create
    ---
    apiVersion: rbac.authorization.k8s.io/v1
    kind: RoleBinding
    metadata: {name: catsdogs-deployer, namespace: NAMESPACE}
    roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: catsdogs-deployer}
    subjects:
      - {kind: ServiceAccount, name: pipeline-runner, namespace: NAMESPACE}  # KFP's runner
      # on a multi-user Kubeflow: {kind: ServiceAccount, name: default-editor, namespace: PROFILE}

The predictor's own ``serviceAccountName`` is the account KServe's storage initializer uses to
read ``storageUri`` (on GKE: one bound to a Google service account with storage.objectViewer).
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
_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")


class DeployError(CatsdogsError, RuntimeError):
    """The Kubernetes API refused the InferenceService or could not be reached."""


@dataclasses.dataclass(frozen=True)
class DeploySettings:
    """What to deploy and with which resources.

    Attributes:
        name: The InferenceService name (a DNS label: lower case, digits, dashes).
        serving_uri: The SERVING_URI holding numbered SavedModel versions (gs://, s3://, pvc://...).
        namespace: The namespace; empty: the pod's own namespace, else ``default``.
        service_account: The predictor's service account (reads ``serving_uri``); empty: none set.
        canary_traffic_percent: Share of traffic for the new revision (0-100); None: all of it.
        gpus: GPUs per predictor replica (0: CPU only).
        accelerator_type: The GPU resource name.
        runtime_version: The TF Serving image tag (e.g. ``2.6.2-gpu`` for GPUs); empty: KServe's.
        cpu: CPU request and limit per replica.
        memory: Memory request and limit per replica.
        min_replicas: Replicas kept running (0 lets KServe scale to zero).
        max_replicas: Upper bound for the autoscaler.
    """

    name: str
    serving_uri: str
    namespace: str = ""
    service_account: str = ""
    canary_traffic_percent: int | None = None
    gpus: int = 0
    accelerator_type: str = "nvidia.com/gpu"
    runtime_version: str = ""
    cpu: str = "1"
    memory: str = "2Gi"
    min_replicas: int = 1
    max_replicas: int = 3

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise SettingsError(
                f"--name must be a DNS label (lower case letters, digits and '-', starting with a "
                f"letter, at most 63 characters), got {self.name!r}; e.g. catsdogs."
            )
        if not self.serving_uri.startswith(STORAGE_SCHEMES):
            raise SettingsError(
                f"--serving-uri must be storage the cluster can read ({', '.join(STORAGE_SCHEMES)}), "
                f"got {self.serving_uri!r}. Export to gs://BUCKET/serving/catsdogs (or s3://...) first."
            )
        percent = self.canary_traffic_percent
        if percent is not None and not 0 <= percent <= 100:
            raise SettingsError(f"--canary-traffic-percent must be in [0, 100], got {percent}.")
        if not 0 <= self.gpus <= 16:
            raise SettingsError(f"--gpus must be between 0 and 16, got {self.gpus}.")
        for label, value in (("--cpu", self.cpu), ("--memory", self.memory)):
            if not _QUANTITY.match(value):
                raise SettingsError(
                    f"{label} must be a Kubernetes quantity such as 1, 500m or 2Gi, got {value!r}."
                )
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            raise SettingsError(
                f"Need 0 <= --min-replicas <= --max-replicas and --max-replicas >= 1, got "
                f"{self.min_replicas} and {self.max_replicas}."
            )


def default_namespace() -> str:
    """The pod's namespace when running in a cluster, else ``default``."""
    if NAMESPACE_FILE.is_file():
        return NAMESPACE_FILE.read_text().strip() or "default"
    return "default"


def manifest(settings: DeploySettings) -> dict[str, Any]:
    """The ``InferenceService`` for ``settings`` (a plain dict, ready for YAML or JSON)."""
    resources: dict[str, dict[str, str]] = {
        "requests": {"cpu": settings.cpu, "memory": settings.memory},
        "limits": {"cpu": settings.cpu, "memory": settings.memory},
    }
    if settings.gpus:
        resources["limits"][settings.accelerator_type] = str(settings.gpus)
        resources["requests"][settings.accelerator_type] = str(settings.gpus)
    model: dict[str, Any] = {
        "modelFormat": {"name": "tensorflow"},
        "storageUri": settings.serving_uri,
        "resources": resources,
    }
    if settings.runtime_version:
        model["runtimeVersion"] = settings.runtime_version
    predictor: dict[str, Any] = {
        "minReplicas": settings.min_replicas,
        "maxReplicas": settings.max_replicas,
        "model": model,
    }
    if settings.service_account:
        predictor["serviceAccountName"] = settings.service_account
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
            403: " Grant the step's service account the Role in this module's docstring "
            "(serving.kserve.io inferenceservices: get, create, patch).",
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
