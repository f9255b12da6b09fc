"""The champion gate: promote a model when it beats the current champion on the same test split.

Promotion first checks that the evaluation is the promoted model's (its sha256) and was measured on
the dataset's test split, then compares it with the champion's score on that split (re-measured
when the champion was evaluated on another one). A better model becomes a new version with a
pointer switch that can lose a race to a concurrent promotion (see ``champion``): the loser
re-decides against the new champion (``retries``) or raises ``PromotionConflictError``.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from catsdogs.components.common import errors, model_dir, records, storage, tempdirs, tracking
from catsdogs.components.evaluate.core import evaluate
from catsdogs.components.evaluate.metrics import SCALARS
from catsdogs.components.evaluate.record import Evaluation
from catsdogs.components.promote import champion
from catsdogs.components.promote.record import ChampionRecord

HIGHER_IS_BETTER = ("accuracy", "f1", "roc_auc", "precision", "recall")


@dataclasses.dataclass(frozen=True)
class PromoteSettings:
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


def _champion_score(
    pointer: champion.Pointer,
    champion_uri: str,
    dataset: records.Dataset,
    split_id: str,
    metric: str,
) -> tuple[float | None, bool]:
    """The champion's ``metric`` on this test split: recorded, or re-measured when it differs.

    A version without evaluation.json (promoted before the file had that name) is re-measured.
    """
    assert pointer.record is not None
    version_dir = storage.join(champion_uri, pointer.record.path)
    recorded = Evaluation.open_if_present(version_dir)
    if recorded is not None and recorded.test_split_sha256 == split_id:
        return recorded.metric(metric), False
    with tempdirs.temporary("champion-eval") as tmp:
        result = evaluate(version_dir, dataset, str(tmp), track=False)
    value = result.metrics.get(metric)
    return (None if value is None else float(value)), True


def _model_sha256(model_uri: str) -> str:
    """The sha256 of ``MODEL_DIR/model.keras`` (ModelError when there is none)."""
    with model_dir.local_model_file(model_uri) as path:
        return records.sha256_file(path)


def promote(
    model_uri: str,
    evaluation_uri: str,
    data_uri: str,
    champion_uri: str,
    config: PromoteSettings | None = None,
) -> PromotionResult:
    """Promote ``model_uri`` to champion at ``champion_uri`` if it beats the current champion.

    With an MLflow tracking server (``common.tracking``), the decision is logged and a promoted
    version is registered in the model registry, its ``champion`` alias moved to it.

    Args:
        model_uri: Model folder with model.keras.
        evaluation_uri: Evaluation folder of that model (evaluation.json from ``evaluate``).
        data_uri: The prepared dataset the evaluation was measured on.
        champion_uri: Champion location (local folder, gs:// or s3:// prefix).
        config: Margin, metric and retries.

    Raises:
        PromotionConflictError: Lost the race to concurrent promotions more than ``retries`` times.
        EvaluationError: ``evaluation_uri`` holds no evaluation.json.
        ModelError: ``model_uri`` holds no model.keras.
        OutputConflictError: ``champion_uri`` is a local file.
        SettingsError: The evaluation is another model's (its sha256 differs), was measured on
            another test split than ``data_uri``'s, or ``config.metric`` is undefined in it.
    """
    with tracking.task_run("promote", tags={"catsdogs.task": "promote"}) as run:
        result = _gate(
            model_uri, evaluation_uri, data_uri, champion_uri, config or PromoteSettings()
        )
        _track(run, result, champion_uri)
    return result


def _track(run: tracking.Run, result: PromotionResult, champion_uri: str) -> None:
    """Log the gate's decision; register a promoted version (the registry follows the pointer)."""
    run.log_metrics({"promoted": int(result.promoted), "score": result.score})
    if result.champion_score is not None:
        run.log_metrics({"champion_score": result.champion_score})
    run.set_tags({"catsdogs.reason": result.reason, "catsdogs.champion_uri": champion_uri})
    if not (result.promoted and run.enabled):
        return
    record = champion.read_pointer(champion_uri).record
    if record is None or record.version != result.version:
        return  # a later promotion already replaced it: that one registers itself
    tracking.register_champion(
        run,
        champion_uri,
        record,
        still_champion=lambda: champion.read_pointer(champion_uri).version == result.version,
    )


def _gate(
    model_uri: str,
    evaluation_uri: str,
    data_uri: str,
    champion_uri: str,
    config: PromoteSettings,
) -> PromotionResult:
    """The champion gate itself (``promote`` without the tracking)."""
    evaluation = Evaluation.open(evaluation_uri)
    dataset = records.Dataset.open(data_uri)
    manifest = dataset.manifest
    split_id = dataset.identity(("test",))
    if evaluation.test_split_sha256 != split_id:
        raise errors.SettingsError(
            f"{evaluation_uri} was measured on another test split than {data_uri}'s; run "
            f"`catsdogs evaluate --model {model_uri} --data {data_uri}` and promote that evaluation."
        )
    model_sha256 = _model_sha256(model_uri)
    if evaluation.model_sha256 != model_sha256:
        raise errors.SettingsError(
            f"{evaluation_uri} is the evaluation of another model ({evaluation.model or '?'}, "
            f"sha256 {str(evaluation.model_sha256)[:12]}) than {model_uri} (sha256 "
            f"{model_sha256[:12]}); run `catsdogs evaluate --model {model_uri} --data {data_uri}` "
            "and promote that evaluation."
        )
    storage.check_folder(champion_uri, "--champion")
    score = evaluation.metric(config.metric)
    if score is None:
        raise errors.SettingsError(
            f"{config.metric} is undefined in {evaluation_uri} (one-class test split?)."
        )
    evaluation_text = evaluation.to_json()
    attempt = 0
    while True:  # each pass returns or raises, or retries after a lost race
        pointer = champion.read_pointer(champion_uri)
        champion_score, reevaluated = None, False
        if pointer.record is not None:
            if pointer.record.model_sha256 == model_sha256:
                return PromotionResult(
                    False, pointer.version, "this model is already the champion", score, score
                )
            champion_score, reevaluated = _champion_score(
                pointer, champion_uri, dataset, split_id, config.metric
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
        version = max([pointer.version, *champion.existing_versions(champion_uri)]) + 1
        try:
            relative, written = champion.write_version(
                champion_uri, version, model_uri, model_sha256, evaluation_text
            )
            record = ChampionRecord(
                version=version,
                path=relative,
                metric=config.metric,
                score=score,
                metrics={k: evaluation.values.get(k) for k in SCALARS},
                model_sha256=model_sha256,
                source_model=str(model_uri),
                test_split_sha256=split_id,
                source_fingerprint=manifest.source_fingerprint,
                previous_version=pointer.version or None,
                promoted_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            )
            champion.publish(champion_uri, record, pointer, written)
        except champion.PromotionConflictError:
            if attempt == config.retries:
                raise
            attempt += 1
            continue
        reason = (
            "no champion yet: this model becomes the first"
            if pointer.record is None
            else f"{config.metric} {score:.4f} beats the champion's {champion_score} by more than "
            f"{config.margin}"
        )
        return PromotionResult(True, version, reason, score, champion_score, reevaluated)
