"""Runs on Kubeflow Pipelines: retry a failed one.

KFP 2.17's ``RetryRun`` (backend/api/v2beta1/run.proto: ``POST /apis/v2beta1/runs/{run_id}:retry``,
no body) re-submits the run's Argo Workflow with its succeeded nodes kept and its failed, errored
and never-run nodes reset (``Workflow.GenerateRetryExecution``, backend/src/common/util/workflow.go,
tag 2.17.0). The server refuses a workflow that is not Failed or Error, and one whose node status
was offloaded. This is the recovery for what Argo's own retries miss: KFP compiles a task's retry
as ``retryStrategy`` without ``retryPolicy``, so Argo applies ``OnFailure`` and does not retry a
node in Error, such as a pod deleted with its node (``pod deleted``, workflow/controller/
operator.go, argo-workflows v4.0.5 as pinned by KFP 2.17.0). The trainers then resume from their
checkpoint folders, which the same inputs name the same way.
"""

from __future__ import annotations

import dataclasses
import re

from catsdogs.components.common.errors import SettingsError
from catsdogs.pipelines.kfp_session import Session, Target, refused_as_kfp_error

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# V2beta1RuntimeState values of a run that has not ended: the server would refuse the retry.
_STILL_GOING = ("PENDING", "RUNNING", "CANCELING", "PAUSED")


@dataclasses.dataclass(frozen=True)
class Retried:
    """A run sent back to work."""

    run_id: str
    name: str
    state_before: str
    url: str


def retry(session: Session, target: Target, run_id: str) -> Retried:
    """Retry a failed (or terminated) run: its failed tasks run again, the rest are kept.

    Args:
        session: A connected session.
        target: For the run's URL in the UI.
        run_id: The run's id (from the run's page or ``catsdogs submit``).

    Returns:
        The run, its state before the retry and its URL.

    Raises:
        SettingsError: The run id is malformed, or the run is still going or succeeded.
        KfpError: KFP could not be reached or refused the request (e.g. the run is unknown).
    """
    if not _RUN_ID.match(run_id):
        raise SettingsError(
            f"run id {run_id!r} is not a Kubeflow Pipelines run id (letters, digits, '-', '.', "
            "'_'); copy it from the run's page or from `catsdogs submit`'s output."
        )
    with refused_as_kfp_error():
        run = session.client.get_run(run_id)
    state = str(run.state or "")
    name = str(run.display_name or run_id)
    if state in _STILL_GOING:
        raise SettingsError(
            f"Run {run_id} ({name}) is {state}: only a run that ended FAILED or CANCELED can be "
            "retried; wait for it to end (or terminate it in the UI) and retry then."
        )
    if state == "SUCCEEDED":
        raise SettingsError(f"Run {run_id} ({name}) SUCCEEDED: nothing to retry.")
    with refused_as_kfp_error():
        session.client._run_api.run_service_retry_run(run_id)
    return Retried(run_id, name, state, target.url(f"runs/details/{run_id}"))
