"""Recurring runs (scheduled retraining) on Kubeflow Pipelines: create, list, delete.

KFP's cron has six fields, seconds first (``0 0 3 * * *`` = 03:00 every day). The usual five-field
form (``0 3 * * *``) is accepted and converted by prepending ``0`` seconds; six fields pass as they
are; ``@daily``-style descriptors and ``@every 12h`` pass too. Each field is checked against its range.

Creating is idempotent by name: a recurring run is created, then every older recurring run of the
same name in the namespace is deleted, so ``make schedule`` twice leaves one schedule, on the newest
pipeline version (the old schedules' past runs stay). Created first, deleted second: when the
server refuses the new one, the old one keeps running.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from catsdogs.components.common.errors import SettingsError
from catsdogs.pipelines.submit import (
    Server,
    Session,
    Target,
    check_cluster_arguments,
    experiment_id,
    open_session,
    refused_as_kfp_error,
    upload,
)

_MONTHS = "JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split()
_DAYS = "SUN MON TUE WED THU FRI SAT".split()
# (name, low, high, names for low.., allows "?")
_FIELDS = {
    "second": (0, 59, [], False),
    "minute": (0, 59, [], False),
    "hour": (0, 23, [], False),
    "day of month": (1, 31, [], True),
    "month": (1, 12, _MONTHS, False),
    "day of week": (0, 6, _DAYS, True),
}
DEFAULT_NAME = "catsdogs-retrain"
DEFAULT_MAX_CONCURRENCY = 1
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_EVERY = re.compile(r"^@every ([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")


def _value(text: str, field: str, expression: str) -> int:
    low, high, names, _ = _FIELDS[field]
    if text.upper() in names:
        return low + names.index(text.upper())
    if not text.isdigit():
        raise SettingsError(
            f"Invalid cron expression {expression!r}: {field} has {text!r}, expected a number "
            f"{low}-{high}" + (f" or a name ({names[0]}-{names[-1]})" if names else "") + "."
        )
    number = int(text)
    if not low <= number <= high:
        hint = " (use 0 for Sunday)" if field == "day of week" and number == 7 else ""
        raise SettingsError(
            f"Invalid cron expression {expression!r}: {field} {number} is outside "
            f"{low}-{high}{hint}."
        )
    return number


def _check_field(text: str, field: str, expression: str) -> None:
    allows_question = _FIELDS[field][3]
    for part in text.split(","):
        base, slash, step = part.partition("/")
        if slash and (not step.isdigit() or int(step) < 1):
            raise SettingsError(
                f"Invalid cron expression {expression!r}: {field} step {step!r} must be a "
                "positive whole number."
            )
        if base == "*" or (base == "?" and allows_question and not slash):
            continue
        start, dash, end = base.partition("-")
        first = _value(start, field, expression)
        if dash and _value(end, field, expression) < first:
            raise SettingsError(
                f"Invalid cron expression {expression!r}: {field} range {base!r} runs backwards."
            )


def to_kfp_cron(expression: str) -> str:
    """Validate a cron expression and return KFP's six-field form (seconds first).

    Args:
        expression: Five fields (minute hour day-of-month month day-of-week), six fields
            (seconds first), or a descriptor such as ``@daily`` or ``@every 6h``.

    Returns:
        The six-field expression (descriptors unchanged).

    Raises:
        SettingsError: The expression is malformed or a field is out of range.
    """
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text in _DESCRIPTORS or _EVERY.match(text):
            return text
        raise SettingsError(
            f"Invalid cron expression {expression!r}: expected five fields like '0 3 * * *', "
            f"six with seconds first, or one of {', '.join(sorted(_DESCRIPTORS))}, '@every 6h'."
        )
    fields = text.split(" ")
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise SettingsError(
            f"Invalid cron expression {expression!r}: expected 5 fields (minute hour day month "
            f"weekday, e.g. '0 3 * * *') or 6 with seconds first, got {len(fields)}."
        )
    for value, field in zip(fields, _FIELDS, strict=True):
        _check_field(value, field, expression)
    return " ".join(fields)


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A recurring run as listed."""

    recurring_run_id: str
    name: str
    cron: str
    status: str
    max_concurrency: int
    no_catchup: bool


@dataclasses.dataclass(frozen=True)
class Created:
    """A created recurring run, the ids of the same-named ones it replaced, and the server."""

    recurring_run_id: str
    cron: str
    replaced: tuple[str, ...]
    server: Server


def create(
    package: str | Path,
    target: Target,
    arguments: dict[str, Any],
    cron: str,
    name: str = DEFAULT_NAME,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    no_catchup: bool = True,
) -> Created:
    """Upload the pipeline (new version if it exists) and create a recurring run, replacing any of that name.

    Args:
        package: The compiled pipeline YAML.
        target: Where, under which names, with which pipeline root and service account.
        arguments: Pipeline parameters for every scheduled run.
        cron: Five- or six-field cron (converted with :func:`to_kfp_cron`).
        name: The recurring run's display name.
        max_concurrency: At most this many runs at once (1: a slow run delays the next).
        no_catchup: When paused or behind, start only the latest missed run, not all of them.

    Returns:
        The recurring run id, the six-field cron it uses and the replaced recurring runs' ids.

    Raises:
        SettingsError: The cron expression or max_concurrency is invalid, the champion,
            checkpoint root or weights is a local path, or no namespace on a multi-user server.
        SourceError: The source is a local path the cluster cannot read.
        KfpError: KFP could not be reached or refused a request (with the server's message).
    """
    kfp_cron = to_kfp_cron(cron)
    if not 1 <= max_concurrency <= 10:
        raise SettingsError(f"max_concurrency must be between 1 and 10, got {max_concurrency}.")
    check_cluster_arguments(arguments)
    session = open_session(target)
    with refused_as_kfp_error():
        uploaded = upload(session, package, target)
        experiment = experiment_id(session, target)
        older = [item.recurring_run_id for item in list_schedules(session) if item.name == name]
        recurring = session.client.create_recurring_run(
            experiment_id=experiment,
            job_name=name,
            description=f"Scheduled retraining ({kfp_cron}), version {uploaded.version_name}.",
            cron_expression=kfp_cron,
            max_concurrency=max_concurrency,
            no_catchup=no_catchup,
            params=arguments,
            pipeline_id=uploaded.pipeline_id,
            version_id=uploaded.version_id,
            enabled=True,
            pipeline_root=target.pipeline_root,
            service_account=target.service_account,
        )
        for recurring_run_id in older:
            session.client.delete_recurring_run(recurring_run_id)
    return Created(str(recurring.recurring_run_id), kfp_cron, tuple(older), session.server)


def _as_schedule(item: Any) -> Schedule:
    trigger = getattr(item, "trigger", None)
    cron_schedule = getattr(trigger, "cron_schedule", None)
    return Schedule(
        recurring_run_id=str(item.recurring_run_id),
        name=str(item.display_name),
        cron=str(getattr(cron_schedule, "cron", "") or ""),
        status=str(item.status or item.mode or ""),
        max_concurrency=int(item.max_concurrency or 0),
        no_catchup=bool(item.no_catchup),
    )


def list_schedules(session: Session) -> list[Schedule]:
    """Every recurring run in the session's namespace (all pages)."""
    schedules: list[Schedule] = []
    token = ""
    while True:
        with refused_as_kfp_error():
            page = session.client.list_recurring_runs(
                page_token=token, page_size=100, namespace=session.namespace
            )
        schedules.extend(_as_schedule(item) for item in page.recurring_runs or [])
        token = page.next_page_token or ""
        if not token:
            return schedules


def delete(session: Session, recurring_run_id: str) -> None:
    """Delete one recurring run by id (its past runs stay)."""
    with refused_as_kfp_error():
        session.client.delete_recurring_run(recurring_run_id)
