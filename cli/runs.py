"""``catsdogs runs retry``: resume a failed cluster run where it stopped."""

from __future__ import annotations

from typing import Annotated

import typer
from catsdogs.cli.pipeline import TARGET_DEFAULTS, HostOption, KfpNamespaceOption, NamespaceOption
from catsdogs.pipelines.kfp_session import Target

app = typer.Typer(help="Runs on Kubeflow Pipelines: retry a failed one.")


@app.command("retry")
def retry_command(
    run_id: Annotated[
        str, typer.Argument(help="The failed run's id (its page, or submit's output).")
    ],
    host: HostOption = None,
    namespace: NamespaceOption = None,
    kfp_namespace: KfpNamespaceOption = TARGET_DEFAULTS["kfp_namespace"],
) -> None:
    """Retry a failed run: failed tasks run again, succeeded ones are kept, trainers resume.

    Use it when a run failed on something a second attempt fixes, above all a pod that vanished
    with its node (Argo marks that an Error and does not retry it). It needs the run to have
    ended (FAILED or CANCELED); a run stopped by its deadline should be submitted again instead.
    """
    from catsdogs.pipelines.kfp_session import open_session
    from catsdogs.pipelines.runs import retry

    target = Target.from_environment(host=host, namespace=namespace, kfp_namespace=kfp_namespace)
    retried = retry(open_session(target), target, run_id)
    typer.echo(f"Retrying run {retried.run_id} ({retried.name}, was {retried.state_before})")
    typer.echo(retried.url)
