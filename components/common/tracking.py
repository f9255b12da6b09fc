"""Experiment tracking: MLflow when a tracking server is configured, TensorBoard logs always.

MLflow, only when ``MLFLOW_TRACKING_URI`` is set (by KFP 2.17's MLflow plugin on a cluster, by
``catsdogs run --mlflow-uri`` locally, or by hand); without it nothing here talks to anything:

- each task logs into ``MLFLOW_RUN_ID`` when it is set (the plugin's nested run of the task, which
  the plugin itself closes), otherwise into a run it creates and closes, in the experiment
  ``MLFLOW_EXPERIMENT_ID`` or ``MLFLOW_EXPERIMENT_NAME`` or ``catsdogs``, nested under
  ``CATSDOGS_MLFLOW_PARENT_RUN_ID`` when that is set (``catsdogs run``'s run of the pipeline);
- trainers: their settings as params (``settings.<name>``: KFP's launcher logs the task's inputs
  under their bare names, JSON-encoded, and MLflow refuses a param whose value changes), every
  epoch's metrics with the epoch as step, the summary, curves.png and the model folder;
- evaluate: the scalar metrics (with the accuracy interval), the report and figures;
- promote: the promoted version in the model registry (``catsdogs``, alias ``champion``).

``catsdogs run`` (``pipeline_run``) opens a run of the whole local pipeline that the tasks' runs
nest under (KFP's plugin makes the same tree on a cluster).

TensorBoard (``training.tracker``): each trainer writes event files (per-epoch scalars, the Keras
model graph) under ``<model>/logs/`` and, when ``CATSDOGS_TENSORBOARD_ROOT`` is set, copies them to
``<root>/<trainer>/<UTC start time>/`` (at most every 30 seconds while training, and at the end).

Tracking never fails a task: the first error prints one warning line and turns MLflow off for the
rest of the task; training, evaluation and promotion go on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import logging
import numbers
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catsdogs.components.common import config, storage

if TYPE_CHECKING:  # the record's class lives with promote; tracking only reads it
    from catsdogs.components.promote.record import ChampionRecord

EXPERIMENT = "catsdogs"  # the experiment of runs a task creates: named for the pipeline
REGISTERED_MODEL = "catsdogs"
CHAMPION_ALIAS = "champion"
LOGS_DIR = "logs"  # TensorBoard event files, in the model folder
# Bounded retries: a server that is down costs seconds, not MLflow's default minutes (a user's
# own MLFLOW_HTTP_REQUEST_* settings win).
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}
_CHATTY_LOGGERS = ("urllib3", "mlflow", "git", "requests")


def warn(message: str) -> None:
    """One warning line on stderr."""
    print(f"Warning: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the clients' own retry and warning logs: a failure is reported once, by us."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def one_line(error: BaseException) -> str:
    """An error as ``Type: message`` on one line of at most about 250 characters."""
    text = " ".join(str(error).split()) or repr(error)
    return f"{type(error).__name__}: {text[:240]}"


class Run:
    """One task's MLflow run, or nothing (``enabled`` is False without a tracking server)."""

    def __init__(self, task: str, uri: str | None = None) -> None:
        self.task, self.uri = task, uri
        self.client: Any = None
        self.run_id: str | None = None
        self.experiment_id: str | None = config.mlflow_experiment_id()
        self.owned = False  # created here, so closed here (the plugin closes its own)

    @classmethod
    def open(cls, task: str, *, name: str = "", tags: Mapping[str, str] | None = None) -> Run:
        """The run to log into: ``MLFLOW_RUN_ID``, else a new run; disabled without a server."""
        run = cls(task, config.mlflow_tracking_uri())
        if run.uri is None:
            return run
        for key, value in _HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
        os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")  # mlflow imports GitPython
        run.call("starting its run", run._start, name or task, dict(tags or {}))
        return run

    @property
    def enabled(self) -> bool:
        """Whether MLflow calls are made (a server is set and nothing has failed yet)."""
        return self.uri is not None and (self.client is None or self.run_id is not None)

    def call(self, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(*args)``; on any error one warning line, and MLflow off for this task."""
        if not self.enabled:
            return None
        try:
            with _quiet():
                return function(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - tracking never fails a task
            warn(
                f"MLflow tracking at {self.uri} failed while {what} ({one_line(error)}); "
                f"{self.task} goes on without it."
            )
            self.uri = None
            return None

    def _start(self, name: str, tags: dict[str, str]) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        run_id = config.mlflow_run_id()
        if run_id:
            if tags:
                self.client.log_batch(run_id, tags=_tags(tags))
            self.run_id = run_id
            return
        parent = config.mlflow_parent_run_id()
        if parent:
            tags = {"mlflow.parentRunId": parent, **tags}
        self.experiment_id = self.experiment_id or self._experiment()
        created = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self.run_id, self.owned = created.info.run_id, True

    def _experiment(self) -> str:
        name = config.mlflow_experiment_name() or EXPERIMENT
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(self.client.create_experiment(name))
        except Exception:  # another task created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return str(found.experiment_id)

    def log_params(self, params: Mapping[str, Any], prefix: str = "settings.") -> None:
        """Params ``<prefix><name>`` (lists and tuples as ``a,b``)."""
        from mlflow.entities import Param

        def text(value: Any) -> str:
            return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)

        items = [Param(f"{prefix}{k}", text(v)) for k, v in sorted(params.items())]
        self.call("logging params", lambda: self.client.log_batch(self.run_id, params=items))

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        """The finite numbers of ``metrics`` at ``step`` (booleans, text and NaN are left out)."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(key, float(value), now, step)
            for key, value in sorted(metrics.items())
            if isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value
        ]
        if items:
            self.call("logging metrics", lambda: self.client.log_batch(self.run_id, items))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Tags (values as text)."""
        self.call("setting tags", lambda: self.client.log_batch(self.run_id, tags=_tags(tags)))

    def log_folder(self, uri: str, artifact_path: str, *, only: tuple[str, ...] = ()) -> None:
        """The files of the folder ``uri`` (local or remote), or just ``only``, as artifacts."""
        if not self.enabled:
            return

        def upload() -> None:
            with storage.local_dir(uri) as folder:
                if not only:
                    self.client.log_artifacts(self.run_id, str(folder), artifact_path)
                for name in only:
                    if (folder / name).is_file():
                        self.client.log_artifact(self.run_id, str(folder / name), artifact_path)

        self.call(f"uploading {uri}", upload)

    def link(self) -> str | None:
        """The run's page in the MLflow UI (None when MLflow is off)."""
        if not (self.enabled and self.run_id and self.experiment_id):
            return None
        return f"{str(self.uri).rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"

    def close(self, failed: bool = False) -> None:
        """End the run if it was created here (KFP's plugin ends the runs it made)."""
        if self.owned:
            status = "FAILED" if failed else "FINISHED"
            self.call("ending its run", self.client.set_terminated, self.run_id, status)


def _tags(tags: Mapping[str, Any]) -> list[Any]:
    from mlflow.entities import RunTag

    return [RunTag(key, str(value)) for key, value in sorted(tags.items())]


@contextlib.contextmanager
def task_run(task: str, *, name: str = "", tags: Mapping[str, str] | None = None) -> Iterator[Run]:
    """A task's :class:`Run`, closed as FINISHED, or FAILED when the block raises."""
    run = Run.open(task, name=name, tags=tags)
    try:
        yield run
    except BaseException:
        run.close(failed=True)
        raise
    run.close()


def sha256_of(uri: str) -> str:
    """The sha256 of a file (local or remote), as the evaluation and champion records hold it."""
    return hashlib.sha256(storage.read_bytes(uri)).hexdigest()


# ----------------------------------------------------------------------------- model registry


def register_champion(
    run: Run,
    champion_uri: str,
    record: ChampionRecord,
    still_champion: Callable[[], bool] = lambda: True,
) -> Any:
    """Register a promoted champion version in MLflow's model registry; move the alias to it.

    The version's folder (model.keras, evaluation.json) is logged to ``run`` as ``champion/`` and
    registered from there (``runs:/<run>/champion``: the server takes a local path only inside
    the run's artifacts), as a new version of ``catsdogs`` whose tags name the champion version,
    its location (``source``), its model's sha256 and its metrics. The ``champion`` alias moves
    to it unless ``still_champion()`` says a later promotion replaced it meanwhile.

    Returns:
        The MLflow ``ModelVersion``, or None (no server, or it failed: one warning line).
    """
    if not run.enabled:
        return None
    version_uri = storage.join(champion_uri, record.path)
    run.log_folder(version_uri, "champion")
    tags = {
        "source": version_uri,
        "champion_uri": str(champion_uri),
        "champion_version": str(record.version),
        "model_sha256": str(record.model_sha256),
        "source_model": record.source_model or "",
        "metric": record.metric or "",
        "score": "" if record.score is None else str(record.score),
        **{k: str(v) for k, v in (record.metrics or {}).items() if v is not None},
    }

    def register() -> Any:
        from mlflow.exceptions import MlflowException

        client = run.client
        try:
            client.create_registered_model(
                REGISTERED_MODEL, description="The Dogs-vs-Cats champion (catsdogs promote)."
            )
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        created = client.create_model_version(
            REGISTERED_MODEL,
            f"runs:/{run.run_id}/champion",
            run_id=run.run_id,
            tags=tags,
            description=f"Champion v{record.version:04d}: {version_uri}",
        )
        if still_champion():
            client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION_ALIAS, created.version)
        return created

    return run.call("registering the champion", register)


# ----------------------------------------------------------------------------- local pipeline


@dataclasses.dataclass(frozen=True)
class PipelineTracking:
    """What ``catsdogs run`` tracks: its MLflow run (disabled without a server), the log root."""

    run: Run
    tensorboard_root: str

    def ending(self, run_dir: str | os.PathLike[str]) -> str:
        """The run's last lines: how to open TensorBoard, and the MLflow run's page."""
        lines = [f"TensorBoard: tensorboard --logdir {self.tensorboard_root or run_dir}"]
        if link := self.run.link():
            lines.append(f"MLflow: {link}")
        return "\n".join(lines)


@contextlib.contextmanager
def pipeline_run(mlflow_uri: str = "", tensorboard_root: str = "") -> Iterator[PipelineTracking]:
    """The tasks' tracking environment for ``catsdogs run``, and the run their runs nest under.

    Sets ``MLFLOW_TRACKING_URI`` and ``CATSDOGS_TENSORBOARD_ROOT`` (a local root made absolute)
    for the block, so the tasks (subprocesses) inherit them, opens a run ``catsdogs-<UTC time>``
    in the experiment and passes its id as ``CATSDOGS_MLFLOW_PARENT_RUN_ID``. When the server
    cannot be reached, that is the one warning line and the tasks run without MLflow.
    """
    if tensorboard_root and "://" not in tensorboard_root:
        tensorboard_root = str(Path(tensorboard_root).expanduser().resolve())
    name = datetime.datetime.now(datetime.UTC).strftime("catsdogs-%Y%m%d-%H%M%S")
    names = (config.MLFLOW_TRACKING_URI, config.TENSORBOARD_ROOT, config.MLFLOW_PARENT_RUN_ID)
    before = {key: os.environ.get(key) for key in names}
    try:
        if mlflow_uri:
            os.environ[config.MLFLOW_TRACKING_URI] = mlflow_uri
        if tensorboard_root:
            os.environ[config.TENSORBOARD_ROOT] = tensorboard_root
        with task_run("catsdogs run", name=name, tags={"catsdogs.task": "pipeline"}) as run:
            if run.enabled:
                os.environ[config.MLFLOW_PARENT_RUN_ID] = str(run.run_id)
            else:  # no server, or it failed: the tasks do not try again
                os.environ.pop(config.MLFLOW_TRACKING_URI, None)
            yield PipelineTracking(run, tensorboard_root)
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
