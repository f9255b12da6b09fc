"""Compile-time settings of the pipeline: where tasks run and what they request.

These are not pipeline parameters (those are the ``@dsl.pipeline`` function's arguments): they are
fixed when the pipeline is compiled (``catsdogs compile --accelerator-count 2 ...``).
"""

import dataclasses
import re
from typing import Any

from catsdogs.components.common.errors import SettingsError

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|K|M|G|T|Ki|Mi|Gi|Ti)?$")
_LABEL = re.compile(r"^([a-zA-Z0-9.-]+/)?[a-zA-Z0-9]([a-zA-Z0-9._-]{0,61}[a-zA-Z0-9])?$")
# A Kubernetes extended resource name, ``domain/name`` (the driver writes it verbatim as a limit).
_RESOURCE = re.compile(
    r"^(?=.{1,253}/)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*"
    r"/[a-zA-Z0-9]([a-zA-Z0-9._-]{0,61}[a-zA-Z0-9])?$"
)
_SECONDS = re.compile(r"^[0-9]+s$")
_SECRET_NAME = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
# The keys of KFP's own MinIO Secret (mlpipeline-minio-artifact: accesskey, secretkey; KFP's
# pipelines-profile-controller/sync.py creates it per profile), as boto3's variables.
S3_SECRET_KEYS = {"accesskey": "AWS_ACCESS_KEY_ID", "secretkey": "AWS_SECRET_ACCESS_KEY"}
_INT32 = 2**31 - 1  # PipelineConfig's fields are int32


@dataclasses.dataclass(frozen=True)
class Toleration:
    """A Kubernetes toleration for the GPU tasks (``key[=value]:effect``)."""

    key: str
    value: str = ""
    effect: str = "NoSchedule"

    def __post_init__(self) -> None:
        if not _LABEL.match(self.key):
            raise SettingsError(f"toleration key must be a Kubernetes label key, got {self.key!r}.")
        if self.effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise SettingsError(
                f"toleration effect must be NoSchedule, PreferNoSchedule or NoExecute, "
                f"got {self.effect!r}."
            )

    @classmethod
    def parse(cls, text: str) -> "Toleration":
        """Parse ``key[=value][:effect]``, e.g. ``nvidia.com/gpu=present:NoSchedule``."""
        rest, _, effect = text.partition(":")
        key, _, value = rest.partition("=")
        if not key:
            raise SettingsError(
                f"Expected a toleration as key[=value][:effect], got {text!r}; "
                "e.g. --toleration nvidia.com/gpu=present:NoSchedule."
            )
        return cls(key=key, value=value, effect=effect or "NoSchedule")


def parse_node_selector(items: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Parse ``label=value`` pairs, e.g. ``cloud.google.com/gke-accelerator=nvidia-l4``."""
    pairs = []
    for item in items:
        label, sep, value = item.partition("=")
        if not sep or not _LABEL.match(label) or not value:
            raise SettingsError(
                f"Expected a node selector as label=value, got {item!r}; "
                "e.g. --node-selector cloud.google.com/gke-accelerator=nvidia-l4."
            )
        pairs.append((label, value))
    return tuple(pairs)


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    """Compile-time settings: where tasks run and what they request (not pipeline parameters).

    Raises:
        SettingsError: A value is out of range or not a Kubernetes quantity.
    """

    accelerator_type: str = "nvidia.com/gpu"
    accelerator_count: int = 1
    gpu_cpu_request: str = "4"
    gpu_memory_request: str = "16G"
    cpu_request: str = "2"
    memory_request: str = "8G"
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    retries: int = 3
    backoff_duration: str = "60s"
    backoff_factor: int = 2
    backoff_max_duration: str = "86400s"
    # The InferenceService's predictor (the deploy step after a promotion, when serving_uri is set).
    # Checked by the deploy step's own settings (components/serve/deploy.py), with its defaults.
    serving_predictor: str = "catsdogs"
    serving_namespace: str = ""
    serving_service_account: str = "catsdogs-predictor"
    serving_canary_percent: int = -1
    serving_gpus: int = 0
    serving_cpu: str = "1"
    serving_memory: str = "2Gi"
    serving_runtime_version: str = ""
    # s3:// from the step pods (MinIO, S3): AWS_ENDPOINT_URL, and a Secret with S3_SECRET_KEYS.
    s3_endpoint: str = ""
    s3_secret: str = ""
    # Disk for what a task writes itself (TMPDIR, CATSDOGS_CACHE: staged data, features, models and
    # checkpoints), as a generic ephemeral volume of this size; "0": none (node disk, no request).
    scratch_storage: str = "4Gi"
    # Argo keeps a finished run's Workflow (and its pods' logs) this long; 0: forever.
    workflow_ttl_seconds: int = 7 * 24 * 3600
    # Argo stops a run after this long, so a hung scheduled run cannot hold GPUs forever; 0: never.
    active_deadline_seconds: int = 2 * 24 * 3600
    # An exit handler that tells how to retry a failed run (catsdogs runs retry RUN_ID).
    retry_note: bool = True
    # Tracking (docs/tracking.md): set as environment variables of every task.
    mlflow_uri: str = ""
    tensorboard_root: str = ""
    local: bool = False

    def __post_init__(self) -> None:
        domain = self.accelerator_type.partition("/")[0]
        if not _RESOURCE.match(self.accelerator_type) or domain.endswith("kubernetes.io"):
            raise SettingsError(
                f"accelerator_type must be a Kubernetes extended resource name (domain/name, e.g. "
                f"nvidia.com/gpu or amd.com/gpu), got {self.accelerator_type!r}; keep "
                "nvidia.com/gpu and pick the GPU model with --node-selector "
                "cloud.google.com/gke-accelerator=nvidia-l4."
            )
        if not 1 <= self.accelerator_count <= 16:
            raise SettingsError(
                f"accelerator_count must be between 1 and 16, got {self.accelerator_count}."
            )
        if not 0 <= self.serving_gpus <= 8:
            raise SettingsError(f"serving_gpus must be between 0 and 8, got {self.serving_gpus}.")
        from catsdogs.components.serve.deploy import DeploySettings

        DeploySettings(
            name="catsdogs",
            storage_uri="gs://bucket/serving/v0001",
            predictor=self.serving_predictor,
            namespace=self.serving_namespace,
            service_account=self.serving_service_account,
            canary_traffic_percent=None
            if self.serving_canary_percent < 0
            else self.serving_canary_percent,
            gpus=self.serving_gpus,
            runtime_version=self.serving_runtime_version,
        )
        for name in (
            "gpu_cpu_request",
            "gpu_memory_request",
            "cpu_request",
            "memory_request",
            "serving_cpu",
            "serving_memory",
        ):
            if not _QUANTITY.match(getattr(self, name)):
                raise SettingsError(
                    f"{name} must be a Kubernetes quantity such as 4, 500m or 16G, "
                    f"got {getattr(self, name)!r}."
                )
        if self.scratch_storage != "0" and not _QUANTITY.match(self.scratch_storage):
            raise SettingsError(
                f"scratch_storage must be a Kubernetes quantity such as 4Gi (or 0 for none), "
                f"got {self.scratch_storage!r}."
            )
        for name in ("workflow_ttl_seconds", "active_deadline_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT32:
                raise SettingsError(
                    f"{name} must be whole seconds from 0 (off) to {_INT32}, got {value!r}."
                )
        if not 0 <= self.retries <= 10:
            raise SettingsError(f"retries must be between 0 and 10, got {self.retries}.")
        for name in ("backoff_duration", "backoff_max_duration"):
            if not _SECONDS.match(getattr(self, name)):
                raise SettingsError(
                    f"{name} must be whole seconds like 60s, got {getattr(self, name)!r}."
                )
        # Argo parses the factor as an integer (retryStrategy.backoff.factor).
        if isinstance(self.backoff_factor, bool) or not isinstance(self.backoff_factor, int):
            raise SettingsError(
                f"backoff_factor must be a whole number (Argo reads it as one), "
                f"got {self.backoff_factor!r}."
            )
        if not 1 <= self.backoff_factor <= 10:
            raise SettingsError(
                f"backoff_factor must be between 1 and 10, got {self.backoff_factor}."
            )
        if self.s3_endpoint and not re.match(r"^https?://[^/\s]+/?$", self.s3_endpoint):
            raise SettingsError(
                f"s3_endpoint must be http(s)://host[:port], got {self.s3_endpoint!r}; e.g. "
                "--s3-endpoint http://minio-service.kubeflow:9000."
            )
        if self.s3_secret and not _SECRET_NAME.match(self.s3_secret):
            raise SettingsError(
                f"s3_secret must name a Kubernetes Secret (lower case, digits, '-', '.'), got "
                f"{self.s3_secret!r}; e.g. --s3-secret mlpipeline-minio-artifact."
            )
        window = int(self.backoff_max_duration.removesuffix("s"))
        if 0 < self.active_deadline_seconds <= window:
            raise SettingsError(
                f"active_deadline_seconds ({self.active_deadline_seconds}) must be longer than the "
                f"retry window backoff_max_duration ({self.backoff_max_duration}), or 0: a run "
                "deadline inside the window would stop the retries it allows."
            )

    def add_storage_env(self, task: Any) -> None:
        """Give a task the S3 endpoint and the credentials Secret as boto3's variables."""
        from kfp import kubernetes

        if self.s3_endpoint:
            task.set_env_variable("AWS_ENDPOINT_URL", self.s3_endpoint)
        if self.s3_secret:
            kubernetes.use_secret_as_env(task, self.s3_secret, dict(S3_SECRET_KEYS))
        if self.mlflow_uri and not self.mlflow_uri.startswith(("http://", "https://")):
            raise SettingsError(
                f"mlflow_uri must be the http(s):// address of an MLflow server that the pods "
                f"reach, got {self.mlflow_uri!r}; e.g. --mlflow-uri http://mlflow.mlflow:5000."
            )
        if self.tensorboard_root and "://" not in self.tensorboard_root:
            raise SettingsError(
                f"tensorboard_root must be a bucket prefix that outlives the pods, got "
                f"{self.tensorboard_root!r}; e.g. --tensorboard-root gs://bucket/tensorboard."
            )

    def environment(self) -> tuple[tuple[str, str], ...]:
        """The tracking environment variables every task gets (``common.config`` names them)."""
        from catsdogs.components.common import config

        values = (
            (config.MLFLOW_TRACKING_URI, self.mlflow_uri),
            (config.TENSORBOARD_ROOT, self.tensorboard_root),
        )
        return tuple((name, value) for name, value in values if value)
