"""``evaluation.json``, as the typed ``Evaluation``: the one way it is read.

``evaluate`` writes it (see ``core.py``); promote, the report of a later evaluation and the run
summary read it. The identity fields (which model, which test split) are what decide whether an
evaluation may be reused or promoted; everything else is kept in ``values`` for the figures.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from catsdogs.components.common import errors, model_dir, storage

_AGAIN = "Run `catsdogs evaluate` again to rewrite it."


class EvaluationError(errors.CatsdogsError, FileNotFoundError):
    """An evaluation folder that holds no evaluation.json."""


class InvalidEvaluationError(errors.CatsdogsError, ValueError):
    """An evaluation.json that is not a JSON object (damaged, or not written by ``evaluate``)."""


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """The contents of ``evaluation.json``; optional fields are None when a record lacks them.

    Attributes:
        accuracy: Share of test images classified right.
        model: The model folder that was scored.
        model_sha256: sha256 of its model.keras.
        test_split_sha256: ``Manifest.identity(("test",))`` of the split it was measured on.
        test_count: Test images scored.
        accuracy_ci_low: Lower end of the Wilson 95% interval of ``accuracy``.
        accuracy_ci_high: Upper end.
        values: The whole record as written (curves, confusion matrix, gallery... for figures).
    """

    accuracy: float
    model: str | None = None
    model_sha256: str | None = None
    test_split_sha256: str | None = None
    test_count: int | None = None
    accuracy_ci_low: float | None = None
    accuracy_ci_high: float | None = None
    values: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, text: str, uri: str) -> Evaluation:
        """Parse ``evaluation.json`` text read from ``uri``.

        Raises:
            InvalidEvaluationError: Not JSON, not an object, or a field of the wrong type (the
                message names ``uri`` and the field).
        """
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InvalidEvaluationError(f"{uri} is not valid JSON ({error}). {_AGAIN}") from error
        return cls.from_dict(data, uri)

    @classmethod
    def from_dict(cls, data: Any, uri: str) -> Evaluation:
        """Check and convert a decoded evaluation (see ``from_json``)."""
        if not isinstance(data, dict):
            raise InvalidEvaluationError(
                f"{uri} holds {type(data).__name__}, expected a JSON object. Run `catsdogs "
                "evaluate` again to rewrite it."
            )

        def field(name: str, kind: type, required: bool = False) -> Any:
            if name not in data or (data[name] is None and not required):
                if required:
                    raise InvalidEvaluationError(f"{uri} has no {name!r} field. {_AGAIN}")
                return None
            value = data[name]
            numeric = kind is float and isinstance(value, int | float)
            if isinstance(value, bool) or not (numeric or isinstance(value, kind)):
                raise InvalidEvaluationError(
                    f"{uri}: field {name!r} must be {kind.__name__}, got "
                    f"{json.dumps(value)[:60]}. {_AGAIN}"
                )
            return float(value) if kind is float else value

        return cls(
            accuracy=field("accuracy", float, required=True),
            model=field("model", str),
            model_sha256=field("model_sha256", str),
            test_split_sha256=field("test_split_sha256", str),
            test_count=field("test_count", int),
            accuracy_ci_low=field("accuracy_ci_low", float),
            accuracy_ci_high=field("accuracy_ci_high", float),
            values=dict(data),
        )

    @classmethod
    def open(cls, evaluation_uri: str) -> Evaluation:
        """Read ``EVAL_DIR/evaluation.json`` written by ``evaluate``.

        Raises:
            EvaluationError: The folder has no evaluation.json.
            InvalidEvaluationError: It cannot be parsed (the message names it and the field).
        """
        uri = storage.join(evaluation_uri, model_dir.EVALUATION_FILE)
        try:
            text = storage.read_text(uri)
        except FileNotFoundError:
            raise EvaluationError(
                f"{evaluation_uri} has no {model_dir.EVALUATION_FILE}; point --evaluation at the "
                "output folder of `catsdogs evaluate`."
            ) from None
        return cls.from_json(text, uri)

    @classmethod
    def open_if_present(cls, evaluation_uri: str) -> Evaluation | None:
        """``open``, or None when the folder holds no evaluation.json."""
        try:
            return cls.open(evaluation_uri)
        except EvaluationError:
            return None

    def metric(self, name: str) -> float | None:
        """A scalar metric by name (``accuracy``, ``roc_auc``...); None when absent or not a number."""
        value = self.values.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)

    def to_json(self) -> str:
        """The text of ``evaluation.json``: sorted keys, two-space indent."""
        return json.dumps(self.values, indent=2, sort_keys=True)
