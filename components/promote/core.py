"""The champion gate: promote a model when it beats the current champion on the same test split.

Layout of a champion location (local folder or gs:// prefix):

    champion.json            the pointer: which version is the champion, with its score and identity
    versions/v0001/          every model ever promoted, never overwritten:
        evaluation.json      its evaluation (from ``evaluate``), written first
        model.keras          + metrics.json, history.json, run.json, curves.png when the model
                             folder has them (metrics.json is the trainer's summary)
    versions/v0002/ ...

The champion model is ``<champion>/<champion.json["path"]>/model.keras``; ``champion_model_dir``
resolves it. Promotion writes a new ``versions/vN/`` with create-only writes, then switches the
pointer in one compare-and-swap step: on GCS a write with ``if_generation_match`` (the generation
read before deciding), locally a replace under an ``O_EXCL`` lock file that re-checks the version.
A promotion that loses the race deletes the version it wrote and either re-decides against the
new champion (``retries``) or raises ``PromotionConflictError``. Readers only follow the pointer,
so they never see a half-written champion, and previous champions stay under their version name.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from catsdogs.components.common import errors, model_dir, records, storage
from catsdogs.components.evaluate.core import evaluate, load_evaluation
from catsdogs.components.evaluate.metrics import SCALARS

CHAMPION_FILE = "champion.json"
VERSIONS = "versions"
OPTIONAL_MODEL_FILES = (
    model_dir.METRICS_FILE,
    model_dir.HISTORY_FILE,
    model_dir.RUN_FILE,
    model_dir.CURVES_FILE,
)
HIGHER_IS_BETTER = ("accuracy", "f1", "roc_auc", "precision", "recall")
LOCK_FILE = ".champion.lock"
LOCK_WAIT_S = 30.0


class PromotionConflictError(storage.StorageError, errors.CatsdogsError):
    """Another promotion changed the champion while this one was deciding or writing."""


@dataclasses.dataclass(frozen=True)
class PromoteConfig:
    """How the gate decides.

    Attributes:
        margin: The new model is promoted when ``new - champion > margin`` on ``metric``.
        metric: The metric compared (higher is better).
        retries: How many times to re-decide after losing a race with a concurrent promotion.
    """

    margin: float = 0.0
    metric: str = "accuracy"
    retries: int = 2

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin < 1.0:
            raise errors.SettingsError(f"margin must be in [0, 1), got {self.margin}.")
        if self.metric not in HIGHER_IS_BETTER:
            raise errors.SettingsError(
                f"metric must be one of {', '.join(HIGHER_IS_BETTER)}, got {self.metric!r}."
            )
        if not 0 <= self.retries <= 10:
            raise errors.SettingsError(f"retries must be in [0, 10], got {self.retries}.")


@dataclasses.dataclass(frozen=True)
class PromotionResult:
    """What the gate decided and did."""

    promoted: bool
    version: int | None  # the champion's version after this step (None: still no champion)
    reason: str
    score: float
    champion_score: float | None
    champion_reevaluated: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class _Pointer:
    record: dict[str, Any] | None
    generation: int | None  # GCS generation of champion.json (0: absent); None locally

    @property
    def version(self) -> int:
        return int(self.record["version"]) if self.record else 0


def read_pointer(champion_uri: str) -> _Pointer:
    """The current champion record (None when there is none yet) and, on GCS, its generation."""
    uri = storage.join(champion_uri, CHAMPION_FILE)
    generation: int | None = None
    if storage.is_gcs(uri):
        try:
            generation = storage.stat(uri).generation  # before the read: a CAS on it is safe
        except FileNotFoundError:
            return _Pointer(None, 0)
    elif not storage.exists(uri):
        return _Pointer(None, None)
    try:
        record = json.loads(storage.read_text(uri))
    except FileNotFoundError:
        return _Pointer(None, 0 if storage.is_gcs(uri) else None)
    except json.JSONDecodeError as error:
        raise storage.StorageError(
            f"{uri} is not valid JSON ({error}); restore it from versions/ or delete it to start over."
        ) from error
    return _Pointer(record, generation)


def champion_model_dir(champion_uri: str) -> str | None:
    """The folder of the current champion model (with model.keras), or None when there is none."""
    record = read_pointer(champion_uri).record
    return storage.join(champion_uri, record["path"]) if record else None


def _existing_versions(champion_uri: str) -> list[int]:
    root = storage.join(champion_uri, VERSIONS)
    if not storage.is_dir(root):
        return []
    found = {int(m.group(1)) for n in storage.list_files(root) if (m := re.match(r"v(\d+)/", n))}
    return sorted(found)


def _swap_pointer(champion_uri: str, record: dict[str, Any], expected: _Pointer) -> None:
    """Replace champion.json with ``record`` only if it is still ``expected`` (compare-and-swap)."""
    uri = storage.join(champion_uri, CHAMPION_FILE)
    text = json.dumps(record, indent=2, sort_keys=True)
    if storage.is_gcs(uri):
        try:
            storage.write_text(uri, text, if_generation_match=expected.generation or 0)
        except (storage.PreconditionFailedError, storage.AlreadyExistsError) as error:
            raise PromotionConflictError(
                f"{uri} changed while this promotion was deciding (another promotion won)."
            ) from error
        return
    lock = Path(champion_uri, LOCK_FILE)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                raise PromotionConflictError(
                    f"{lock} has been held for over {LOCK_WAIT_S:.0f} s. If no promotion is "
                    "running, a crashed one left it: delete it and promote again."
                ) from None
            time.sleep(0.02)
    try:
        os.write(handle, f"{os.getpid()}\n".encode())
        current = read_pointer(champion_uri)
        if current.version != expected.version:
            raise PromotionConflictError(
                f"{uri} changed while this promotion was deciding: version {expected.version} "
                f"became {current.version} (another promotion won)."
            )
        storage.write_text(uri, text)
    finally:
        os.close(handle)
        lock.unlink(missing_ok=True)


def _champion_score(
    pointer: _Pointer, champion_uri: str, data_uri: str, split_id: str, metric: str
) -> tuple[float | None, bool]:
    """The champion's ``metric`` on this test split: recorded, or re-measured when it differs.

    A version without evaluation.json (promoted before the file had that name) is re-measured.
    """
    assert pointer.record is not None
    version_dir = storage.join(champion_uri, pointer.record["path"])
    evaluation_uri = storage.join(version_dir, model_dir.EVALUATION_FILE)
    recorded = (
        json.loads(storage.read_text(evaluation_uri)) if storage.exists(evaluation_uri) else {}
    )
    if recorded.get("test_split_sha256") == split_id:
        value = recorded.get(metric)
        return (None if value is None else float(value)), False
    with tempfile.TemporaryDirectory(prefix="catsdogs-champion-eval-") as tmp:
        result = evaluate(version_dir, data_uri, tmp)
    value = result.metrics.get(metric)
    return (None if value is None else float(value)), True


def _write_version(
    champion_uri: str, version: int, model_uri: str, evaluation_text: str
) -> tuple[str, list[str]]:
    """Create ``versions/v<N>/`` with create-only writes; returns its relative path and the URIs written."""
    relative = f"{VERSIONS}/v{version:04d}"
    folder = storage.join(champion_uri, relative)
    written: list[str] = []
    try:
        # evaluation.json first: it claims the version name (a concurrent claimer fails here).
        claim = storage.join(folder, model_dir.EVALUATION_FILE)
        storage.write_text(claim, evaluation_text, if_absent=True)
        written.append(claim)
        for name in (model_dir.MODEL_FILE, *OPTIONAL_MODEL_FILES):
            source = storage.join(model_uri, name)
            if name != model_dir.MODEL_FILE and not storage.exists(source):
                continue
            target = storage.join(folder, name)
            storage.write_bytes(target, storage.read_bytes(source), if_absent=True)
            written.append(target)
    except storage.AlreadyExistsError as error:
        _delete_all(written)
        raise PromotionConflictError(f"{folder} is being written by another promotion.") from error
    except BaseException:
        _delete_all(written)
        raise
    return relative, written


def _delete_all(uris: list[str]) -> None:
    for uri in reversed(uris):
        storage.delete(uri)
    for uri in uris[:1]:
        if not storage.is_gcs(uri):  # local folders: remove versions/vN (and versions/) if empty
            for folder in (Path(uri).parent, Path(uri).parent.parent):
                try:
                    folder.rmdir()
                except OSError:
                    break


def promote(
    model_uri: str,
    evaluation_uri: str,
    data_uri: str,
    champion_uri: str,
    config: PromoteConfig | None = None,
) -> PromotionResult:
    """Promote ``model_uri`` to champion at ``champion_uri`` if it beats the current champion.

    Args:
        model_uri: Model folder with model.keras.
        evaluation_uri: Evaluation folder of that model (evaluation.json from ``evaluate``).
        data_uri: The prepared dataset the evaluation was measured on.
        champion_uri: Champion location (local folder or gs:// prefix).
        config: Margin, metric and retries.

    Raises:
        PromotionConflictError: Lost the race to concurrent promotions more than ``retries`` times.
        EvaluationError: ``evaluation_uri`` holds no evaluation.json.
        ModelError: ``model_uri`` holds no model.keras.
        SettingsError: The evaluation was measured on another test split than ``data_uri``'s, or
            ``config.metric`` is undefined in it.
    """
    config = config or PromoteConfig()
    evaluation = load_evaluation(evaluation_uri)
    manifest = records.load_manifest(data_uri)
    split_id = manifest.identity(("test",))
    if evaluation.get("test_split_sha256") != split_id:
        raise errors.SettingsError(
            f"{evaluation_uri} was measured on another test split than {data_uri}'s; run "
            f"`catsdogs evaluate --model {model_uri} --data {data_uri}` and promote that evaluation."
        )
    if not storage.exists(storage.join(model_uri, model_dir.MODEL_FILE)):
        raise errors.ModelError(
            f"{model_uri} has no {model_dir.MODEL_FILE}; point --model at a model folder."
        )
    if evaluation.get(config.metric) is None:
        raise errors.SettingsError(
            f"{config.metric} is undefined in {evaluation_uri} (one-class test split?)."
        )
    score = float(evaluation[config.metric])
    evaluation_text = json.dumps(evaluation, indent=2, sort_keys=True)
    for attempt in range(config.retries + 1):
        pointer = read_pointer(champion_uri)
        champion_score, reevaluated = None, False
        if pointer.record is not None:
            if pointer.record.get("model_sha256") == evaluation.get("model_sha256"):
                return PromotionResult(
                    False, pointer.version, "this model is already the champion", score, score
                )
            champion_score, reevaluated = _champion_score(
                pointer, champion_uri, data_uri, split_id, config.metric
            )
            if champion_score is not None and not score - champion_score > config.margin:
                return PromotionResult(
                    False,
                    pointer.version,
                    f"{config.metric} {score:.4f} does not beat the champion's "
                    f"{champion_score:.4f} by more than {config.margin}",
                    score,
                    champion_score,
                    reevaluated,
                )
        version = max([pointer.version, *_existing_versions(champion_uri)]) + 1
        try:
            relative, written = _write_version(champion_uri, version, model_uri, evaluation_text)
            record = {
                "version": version,
                "path": relative,
                "metric": config.metric,
                "score": score,
                "metrics": {k: evaluation.get(k) for k in SCALARS},
                "model_sha256": evaluation.get("model_sha256"),
                "source_model": str(model_uri),
                "test_split_sha256": split_id,
                "source_fingerprint": manifest.source_fingerprint,
                "previous_version": pointer.version or None,
                "promoted_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            }
            try:
                _swap_pointer(champion_uri, record, pointer)
            except BaseException:
                _delete_all(written)
                raise
        except PromotionConflictError:
            if attempt == config.retries:
                raise
            continue
        reason = (
            "no champion yet: this model becomes the first"
            if pointer.record is None
            else f"{config.metric} {score:.4f} beats the champion's {champion_score} by more than "
            f"{config.margin}"
        )
        return PromotionResult(True, version, reason, score, champion_score, reevaluated)
    raise AssertionError("unreachable")  # the loop returns or raises
