"""``manifest.json`` of a prepared dataset, as the typed ``Manifest``.

The manifest is written last by prepare_dataset: a folder without it is not a dataset. It lists
every split's shards (file, record count, size, sha256), the classes a label indexes, what was
left out and why, and the settings and source the dataset was prepared from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from catsdogs.components.common import storage
from catsdogs.components.common.errors import DatasetError

MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")
CLASSES = ("cat", "dog")  # label 0 and label 1 of every dataset prepare_dataset writes
_AGAIN = "Run `catsdogs prepare` again."
_TAMPERED = f"The manifest was edited or damaged: {_AGAIN}"


@dataclasses.dataclass(frozen=True)
class Shard:
    """One TFRecord file of a split, with what ``verify_shards`` checks it against."""

    file: str
    count: int
    size: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: its image count, images per class name and shards in reading order."""

    count: int
    per_class: dict[str, int]
    shards: tuple[Shard, ...]


@dataclasses.dataclass(frozen=True)
class Quarantined:
    """A source file left out of the dataset, and why."""

    file: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Found:
    """What the scan of the source found: labelled images per class, other files ignored."""

    per_class: dict[str, int]
    ignored: int


@dataclasses.dataclass(frozen=True)
class Manifest:
    """The contents of ``manifest.json``; the optional fields are None when a manifest lacks them.

    Attributes:
        classes: Class names; a record's label indexes this.
        splits: Split name -> split.
        quarantined: Source files left out, sorted by name.
        seed: Seed of the split.
        source_fingerprint: Identity of the source's content when it was prepared.
        source: The source as given (folder, archive, gs:// or URL).
        settings: The settings that determine the output (``PrepareSettings.settings()``).
        found: What the scan of the source found.
        format: How the records are stored (``records``, ``image``, ``features``).
    """

    classes: tuple[str, ...]
    splits: dict[str, Split]
    quarantined: tuple[Quarantined, ...]
    seed: int
    source_fingerprint: str
    source: str | None = None
    settings: dict[str, Any] | None = None
    found: Found | None = None
    format: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, text: str, uri: str) -> Manifest:
        """Parse and check ``manifest.json`` text read from ``uri``.

        Raises:
            DatasetError: The text is not JSON or a field is missing or of the wrong type (the
                message names ``uri`` and the field).
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{uri} is not valid JSON ({error}). {_AGAIN}") from error
        return cls.from_dict(data, uri)

    @classmethod
    def from_dict(cls, data: Any, uri: str) -> Manifest:
        """Check and convert a decoded manifest (see ``from_json``)."""
        top = _Fields(data, uri, "")
        classes = tuple(_strings(top.get("classes", list), uri, "classes"))
        if classes != CLASSES:
            raise DatasetError(
                f"{uri}: classes are {list(classes)}, expected {list(CLASSES)} in that order (label "
                f"0 is {CLASSES[0]}, 1 is {CLASSES[1]}): the manifest was edited or comes from "
                f"another tool, and its labels cannot be trusted. {_AGAIN}"
            )
        splits = {name: _split(value, uri, name, classes) for name, value in top.dict_of("splits")}
        quarantined = tuple(
            Quarantined(item.get("file", str), item.get("reason", str))
            for item in top.objects("quarantined")
        )
        found = top.optional("found", dict)
        return cls(
            classes=classes,
            splits=splits,
            quarantined=quarantined,
            seed=top.get("seed", int),
            source_fingerprint=top.get("source_fingerprint", str),
            source=top.optional("source", str),
            settings=top.optional("settings", dict),
            found=None if found is None else _found(found, uri),
            format=top.optional("format", dict),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this manifest (fields that are None are left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    def to_json(self) -> str:
        """The text of ``manifest.json``: sorted keys, two-space indent."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def identity(self, splits: tuple[str, ...] | None = None) -> str:
        """The identity of the images: a sha256 of the classes and every shard's sha256.

        Equal identities mean the very same records, whichever folder holds them.

        Args:
            splits: The splits to cover, e.g. ``("test",)`` for an evaluation; None: all of them.

        Raises:
            DatasetError: A split in ``splits`` is not in the manifest.
        """
        names = sorted(self.splits if splits is None else splits)
        missing = [name for name in names if name not in self.splits]
        if missing:
            raise DatasetError(
                f"The dataset has no {missing[0]!r} split (has: {sorted(self.splits)})."
            )
        content = {
            "classes": list(self.classes),
            "splits": {
                name: [shard.sha256 for shard in self.splits[name].shards] for name in names
            },
        }
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


class _Fields:
    """Typed reads of one JSON object of a manifest; errors name the file and the field."""

    def __init__(self, data: Any, uri: str, where: str) -> None:
        if not isinstance(data, dict):
            raise DatasetError(
                f"{uri}: {where or 'the manifest'} must be a JSON object, got "
                f"{type(data).__name__}. {_AGAIN}"
            )
        self.data, self.uri, self.where = data, uri, where

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def optional(self, key: str, kind: type) -> Any:
        return self.get(key, kind) if key in self.data else None

    def get(self, key: str, kind: type) -> Any:
        if key not in self.data:
            raise DatasetError(f"{self.uri} has no {self.path(key)!r} field. {_AGAIN}")
        return _typed(self.data[key], kind, self.uri, self.path(key))

    def dict_of(self, key: str) -> list[tuple[str, Any]]:
        return list(self.get(key, dict).items())

    def objects(self, key: str) -> list[_Fields]:
        items = self.get(key, list)
        return [_Fields(item, self.uri, f"{self.path(key)}[{i}]") for i, item in enumerate(items)]

    def counts(self, key: str) -> dict[str, int]:
        return {
            name: _typed(value, int, self.uri, f"{self.path(key)}.{name}")
            for name, value in self.dict_of(key)
        }


_KINDS = {int: "an integer", str: "a string", list: "a list", dict: "a JSON object"}


def _typed(value: Any, kind: type, uri: str, path: str) -> Any:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise DatasetError(
            f"{uri}: field {path!r} must be {_KINDS[kind]}, got {json.dumps(value)[:60]}. {_AGAIN}"
        )
    return value


def _strings(values: list[Any], uri: str, path: str) -> list[str]:
    return [_typed(value, str, uri, f"{path}[{i}]") for i, value in enumerate(values)]


def _split(data: Any, uri: str, name: str, classes: tuple[str, ...]) -> Split:
    """One split of a manifest, checked for names and counts that agree with each other."""
    where = f"splits.{name}"
    fields = _Fields(data, uri, where)
    entries = fields.objects("shards")
    shards = tuple(
        Shard(
            _shard_file(s.get("file", str), uri, s.path("file"), shard_name(name, i, len(entries))),
            s.get("count", int),
            s.get("size", int),
            s.get("sha256", str),
        )
        for i, s in enumerate(entries)
    )
    split = Split(fields.get("count", int), fields.counts("per_class"), shards)
    problem = None
    if set(split.per_class) != set(classes):
        problem = f"per_class names {sorted(split.per_class)}, not the classes {list(classes)}"
    elif sum(split.per_class.values()) != split.count:
        problem = f"count is {split.count} but per_class adds up to {sum(split.per_class.values())}"
    elif sum(shard.count for shard in shards) != split.count:
        problem = f"count is {split.count} but its shards hold {sum(s.count for s in shards)}"
    elif min([split.count, *(v for s in shards for v in (s.count, s.size))]) < 0:
        problem = "a count or size is negative"
    if problem:
        raise DatasetError(f"{uri}: {where} does not add up: {problem}. {_TAMPERED}")
    return split


def _shard_file(file: str, uri: str, path: str, expected: str) -> str:
    """A shard's file name, refused unless it is the plain name its position gives it."""
    if not file or file in (".", "..") or any(c in file for c in "/\\\0"):
        raise DatasetError(
            f"{uri}: field {path!r} is {file!r}, not a plain file name: a dataset may only name "
            f"files in its own folder. {_TAMPERED}"
        )
    if file != expected:
        raise DatasetError(
            f"{uri}: field {path!r} is {file!r}, expected {expected!r} at that place in the shard "
            f"list. {_TAMPERED}"
        )
    return file


def _found(data: Any, uri: str) -> Found:
    fields = _Fields(data, uri, "found")
    return Found(fields.counts("per_class"), fields.get("ignored", int))


def shard_name(split: str, index: int, total: int) -> str:
    """The file name of one shard, e.g. ``train-00000-of-00004.tfrecord``."""
    return f"{split}-{index:05d}-of-{total:05d}.tfrecord"


def load_manifest(dataset: str | Path) -> Manifest:
    """Read ``manifest.json`` of a prepared dataset (local, gs:// or s3://), with a clear error if absent."""
    if not str(dataset).strip():
        raise DatasetError(
            f"The dataset location is empty ({str(dataset)!r}). Point --data at the output folder "
            "or gs:// / s3:// prefix of `catsdogs prepare`."
        )
    uri = storage.join(dataset, MANIFEST)
    if not storage.exists(uri):
        raise DatasetError(
            f"{dataset} is not a prepared dataset: it has no {MANIFEST}. Point --data at the output "
            "of `catsdogs prepare` (the manifest is written last, so a folder without it is an "
            "unfinished or failed preparation: run prepare again)."
        )
    return Manifest.from_json(storage.read_text(uri), uri)


def write_manifest(output: str, manifest: Manifest) -> None:
    """Write ``manifest.json`` to a local folder, gs:// or s3:// prefix."""
    storage.write_text(storage.join(output, MANIFEST), manifest.to_json())
