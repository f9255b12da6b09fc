"""The exit handler of a cluster run: when the run failed, say how to resume it.

Why a note and not an automatic retry: KFP's RetryRun refuses a run whose Argo Workflow is not
yet Failed or Error ("Workflow must be Failed/Error to retry", ``Workflow.GenerateRetryExecution``
in backend/src/common/util/workflow.go, tag 2.17.0), and an exit handler runs while its workflow
is still Running, so a run cannot retry itself. The note names the command that can, once KFP
shows the run as failed: ``catsdogs runs retry RUN_ID`` re-runs the failed and never-run tasks,
keeps the succeeded ones, and the trainers resume from their checkpoint folders.

Imported only by ``build_pipeline`` (kfp reads the annotation objects, so kfp is imported here).
"""

from kfp import dsl  # noqa: TID253 - imported lazily by build_pipeline only


def retry_note(status: dsl.PipelineTaskFinalStatus, run_id: str) -> str:
    """Print how to resume the run when it did not succeed; never fails itself.

    Args:
        status: The final status of the run's tasks (the exit handler's group).
        run_id: The pipeline run's id (this step is never cached, so it may take it).

    Returns:
        The note printed ("" when the run succeeded).
    """
    state = str(status.state or "")
    if state in ("COMPLETE", "CACHED", "SUCCEEDED"):
        print(f"Run {run_id}: {state}; nothing to retry.", flush=True)
        return ""
    note = (
        f"Run {run_id} ended {state or 'without a state'}"
        + (f" ({status.error_message})" if status.error_message else "")
        + ". Argo retries a task that Failed, not one whose pod vanished (an Error: 'pod deleted', "
        f"e.g. a reclaimed spot node). Once the run shows Failed: catsdogs runs retry {run_id} "
        "(succeeded steps are kept, the trainers resume from their checkpoints under "
        "checkpoint_root). If it hit its deadline, submit a new run instead: the deadline counts "
        "from the first start, and unchanged steps come from the cache."
    )
    print(note, flush=True)
    return note
