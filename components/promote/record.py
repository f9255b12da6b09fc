"""``champion.json``, the champion pointer, as the typed ``ChampionRecord``: the one way it is read.

Promote writes it (``champion.publish``); promote, evaluate's champion view, export and serve and
the run summary follow it. Everything that follows it reads ``<champion>/<path>``, so ``path`` must
be exactly ``versions/v<version, 4 digits>``: a ``../..`` or another prefix would make a reader
leave the champion location. The refusal names neither where the path points nor what is there.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from catsdogs.components.common import storage

VERSIONS = "versions"
_RESTORE = "Restore it from a good copy, or delete it to start over."


def version_path(version: int) -> str:
    """The one path a pointer may name for ``version``: ``versions/vNNNN``."""
    return f"{VERSIONS}/v{version:04d}"


@dataclasses.dataclass(frozen=True)
class ChampionRecord:
    """The contents of ``champion.json``; optional fields are None when a record lacks them.

    Attributes:
        version: The champion's version (1, 2, ...).
        path: Its folder inside the champion location, ``versions/vNNNN``.
        metric: The metric it was promoted on.
        score: Its value of ``metric``.
        metrics: Its scalar metrics (``evaluate.metrics.SCALARS``) as evaluated.
        model_sha256: sha256 of its model.keras.
        source_model: The model folder it was promoted from.
        test_split_sha256: The identity of the test split it was scored on.
        source_fingerprint: The identity of the source its dataset was prepared from.
        previous_version: The champion it replaced (None for the first).
        promoted_at: When (UTC, ISO 8601).
    """

    version: int
    path: str
    metric: str | None = None
    score: float | None = None
    metrics: dict[str, Any] | None = None
    model_sha256: str | None = None
    source_model: str | None = None
    test_split_sha256: str | None = None
    source_fingerprint: str | None = None
    previous_version: int | None = None
    promoted_at: str | None = None

    @classmethod
    def from_json(cls, text: str, uri: str) -> ChampionRecord:
        """Parse ``champion.json`` text read from ``uri``.

        Raises:
            StorageError: Not JSON; no positive integer ``version``; ``path`` not
                ``versions/v<version>``; another field of the wrong type (names the field).
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise storage.StorageError(
                f"{uri} is not valid JSON ({error}); restore it from versions/ or delete it to "
                "start over."
            ) from error
        return cls.from_dict(data, uri)

    @classmethod
    def from_dict(cls, data: Any, uri: str) -> ChampionRecord:
        """Check and convert a decoded pointer (see ``from_json``)."""
        version = data.get("version") if isinstance(data, dict) else None
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise storage.StorageError(
                f"{uri} does not name a champion version (expected an object with a positive "
                f'integer "version"). {_RESTORE}'
            )
        expected = version_path(version)
        if data.get("path") != expected:
            shown = str(data.get("path"))[:80]
            raise storage.StorageError(
                f"{uri} names path {shown!r} for version {version}; a champion pointer must name "
                f"exactly {expected} inside the champion location. {_RESTORE}"
            )
        kinds: dict[str, tuple[type, ...]] = {
            "metric": (str,),
            "score": (int, float),
            "metrics": (dict,),
            "model_sha256": (str,),
            "source_model": (str,),
            "test_split_sha256": (str,),
            "source_fingerprint": (str,),
            "previous_version": (int,),
            "promoted_at": (str,),
        }
        values: dict[str, Any] = {}
        for name, kind in kinds.items():
            value = data.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
                raise storage.StorageError(
                    f"{uri}: field {name!r} must be {kind[0].__name__}, got "
                    f"{json.dumps(value)[:60]}. {_RESTORE}"
                )
            values[name] = value
        score = values.pop("score")
        return cls(
            version=version, path=expected, score=None if score is None else float(score), **values
        )

    def to_json(self) -> str:
        """The text of ``champion.json``: sorted keys, two-space indent."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)
