"""The one place that reads environment variables.

Everything configurable from the environment is read here, so a reader can see every knob at once:

- ``CATSDOGS_IMAGE``: the container image the pipeline's components run from. Its default is
  ``DEFAULT_IMAGE`` below, the one place the reference lives; ``make images`` reads it from here.
- ``STORAGE_EMULATOR_HOST``: when set, google-cloud-storage talks to that endpoint (fake-gcs-server
  in tests) with anonymous credentials.
- ``AWS_ENDPOINT_URL_S3`` (or ``AWS_ENDPOINT_URL``): the S3-compatible endpoint for s3:// URIs
  (MinIO on a Kubeflow cluster, moto's server in tests); unset means Amazon S3. Credentials and
  retry settings (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ``AWS_RETRY_MODE``...) are boto3's own.
- ``GOOGLE_CLOUD_PROJECT``: the project for new storage clients (optional; buckets are global).
- ``CATSDOGS_CACHE``: where downloaded sources and datasets are cached (default ``~/.cache/catsdogs``).
- ``CATSDOGS_WEIGHTS_DIR``: ImageNet notop weight files baked into the GPU image at build time
  (under their Keras file names); ``--weights imagenet`` uses them before trying to download.
- ``CATSDOGS_STORAGE_RETRY_SECONDS`` (default 120), ``CATSDOGS_STORAGE_UNREACHABLE_SECONDS``
  (default 15): how long gs:// calls retry transient errors, and a storage endpoint that cannot
  be connected to at all.
- ``CATSDOGS_KUBE_TOKEN``: the bearer token of ``catsdogs deploy --host`` (instead of ``--token``,
  which other users can read in ``ps``).
- ``KFP_HOST``, ``KFP_NAMESPACE``, ``KFP_TOKEN``: the Kubeflow Pipelines endpoint, profile namespace
  and bearer token for ``catsdogs submit`` / ``catsdogs schedule`` (options override them).
- ``MLFLOW_TRACKING_URI``, ``MLFLOW_RUN_ID``, ``MLFLOW_EXPERIMENT_ID``, ``MLFLOW_EXPERIMENT_NAME``:
  MLflow tracking (``common.tracking``); KFP 2.17's MLflow plugin sets the first three in each task.
  ``CATSDOGS_MLFLOW_PARENT_RUN_ID``: the parent of the runs that tasks create (``catsdogs run``).
- ``CATSDOGS_TENSORBOARD_ROOT``: a folder or gs:// prefix the trainers copy their TensorBoard logs to.
"""

from __future__ import annotations

import os
from pathlib import Path

# The image reference the pipeline compiles with (``make images REGISTRY=... TAG=...`` overrides its parts).
DEFAULT_IMAGE = "ghcr.io/catsdogs/catsdogs-gpu:0.1.0"


def image() -> str:
    """The container image reference every component runs from."""
    return os.environ.get("CATSDOGS_IMAGE", DEFAULT_IMAGE)


def storage_emulator_host() -> str | None:
    """The fake-gcs-server (or other emulator) endpoint, if one is configured."""
    return os.environ.get("STORAGE_EMULATOR_HOST") or None


def s3_endpoint() -> str | None:
    """The S3-compatible endpoint (``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``), if any."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def s3_retry_configured() -> bool:
    """Whether ``AWS_RETRY_MODE`` or ``AWS_MAX_ATTEMPTS`` chooses boto3's retries (else: ours)."""
    return bool(os.environ.get("AWS_RETRY_MODE") or os.environ.get("AWS_MAX_ATTEMPTS"))


def gcp_project() -> str | None:
    """The Google Cloud project for new storage clients, if one is configured."""
    return os.environ.get("GOOGLE_CLOUD_PROJECT") or os.environ.get("GCLOUD_PROJECT") or None


def weights_dir() -> Path | None:
    """Where the image baked ImageNet weights (``CATSDOGS_WEIGHTS_DIR``), if anywhere."""
    value = os.environ.get("CATSDOGS_WEIGHTS_DIR")
    return Path(value) if value else None


def cache_dir() -> Path:
    """Where downloads and staged copies of remote data are kept."""
    return Path(os.environ.get("CATSDOGS_CACHE", Path.home() / ".cache" / "catsdogs"))


# Kubeflow Pipelines client (pipelines/submit.py). kfp.Client itself also honours the standard
# KF_PIPELINES_* variables (KF_PIPELINES_SA_TOKEN_PATH in a pod, KF_PIPELINES_UI_ENDPOINT, ...).
def kfp_host() -> str | None:
    """``KFP_HOST``: the KFP API endpoint, e.g. ``http://localhost:8080`` after a port-forward."""
    return os.environ.get("KFP_HOST") or None


def kfp_namespace() -> str | None:
    """``KFP_NAMESPACE``: the Kubeflow profile namespace on a multi-user cluster."""
    return os.environ.get("KFP_NAMESPACE") or None


def kfp_token() -> str | None:
    """``KFP_TOKEN``: a bearer token obtained outside (e.g. ``gcloud auth print-access-token``)."""
    return _secret(os.environ.get("KFP_TOKEN") or None)


def kube_token() -> str | None:
    """``CATSDOGS_KUBE_TOKEN``: the bearer token ``catsdogs deploy --host`` sends (not in argv)."""
    return _secret(os.environ.get("CATSDOGS_KUBE_TOKEN") or None)


def _secret(value: str | None) -> str | None:
    """A secret read from the environment, registered so every message masks it."""
    from catsdogs.components.common import redaction

    redaction.register(value)
    return value


# Storage retries (components/common/gcs.py).
def storage_retry_seconds() -> float:
    """``CATSDOGS_STORAGE_RETRY_SECONDS``: how long a storage call retries transient errors.

    Default 120, google-cloud-storage's own deadline (``DEFAULT_RETRY``); a storage service that
    keeps answering 5xx or 429 that long ends in one line.
    """
    return float(os.environ.get("CATSDOGS_STORAGE_RETRY_SECONDS") or 120.0)


def storage_unreachable_seconds() -> float:
    """``CATSDOGS_STORAGE_UNREACHABLE_SECONDS``: how long to retry when no connection can be made.

    Default 15: a name that does not resolve, a refused or timed-out connection is retried for
    that long (a network blip), not for the whole retry deadline.
    """
    return float(os.environ.get("CATSDOGS_STORAGE_UNREACHABLE_SECONDS") or 15.0)


# Experiment tracking (common/tracking.py). The MLFLOW_* names are MLflow's and KFP's own: KFP 2.17's
# MLflow plugin injects MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_ID and MLFLOW_RUN_ID (the task's
# nested run) into each task's container (docs/decisions.md, "Experiment tracking").
MLFLOW_TRACKING_URI = "MLFLOW_TRACKING_URI"
MLFLOW_PARENT_RUN_ID = "CATSDOGS_MLFLOW_PARENT_RUN_ID"
TENSORBOARD_ROOT = "CATSDOGS_TENSORBOARD_ROOT"


def mlflow_tracking_uri() -> str | None:
    """``MLFLOW_TRACKING_URI``: the MLflow tracking server; unset means no MLflow tracking."""
    return os.environ.get(MLFLOW_TRACKING_URI) or None


def mlflow_run_id() -> str | None:
    """``MLFLOW_RUN_ID``: the run to log into (KFP's plugin: the task's nested run)."""
    return os.environ.get("MLFLOW_RUN_ID") or None


def mlflow_experiment_id() -> str | None:
    """``MLFLOW_EXPERIMENT_ID``: the experiment of runs a task creates (set by KFP's plugin)."""
    return os.environ.get("MLFLOW_EXPERIMENT_ID") or None


def mlflow_experiment_name() -> str | None:
    """``MLFLOW_EXPERIMENT_NAME``: the experiment's name, when no id is given."""
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or None


def mlflow_parent_run_id() -> str | None:
    """``CATSDOGS_MLFLOW_PARENT_RUN_ID``: the run that runs a task creates are nested under."""
    return os.environ.get(MLFLOW_PARENT_RUN_ID) or None


def tensorboard_root() -> str | None:
    """``CATSDOGS_TENSORBOARD_ROOT``: where trainers also copy their TensorBoard logs."""
    return os.environ.get(TENSORBOARD_ROOT) or None
