"""The prepared dataset: its typed ``Manifest``, the TFRecord shards, and tf.data over them.

Layout of a prepared dataset folder (local or gs://), written by prepare_dataset:

    train-00000-of-00002.tfrecord ...   tf.train.Example records with the FEATURES below
    val-00000-of-00001.tfrecord ...
    test-00000-of-00001.tfrecord ...
    quality_report.md
    manifest.json                       written last: a folder without it is not a dataset

Each record: ``image`` (JPEG bytes, RGB, EXIF orientation applied), ``label`` (index into
``Manifest.classes``), ``id`` (the source file's relative name).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from catsdogs.components.common import storage
from catsdogs.components.common.errors import DatasetError

MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")
CLASSES = ("cat", "dog")  # label 0 and label 1 of every dataset prepare_dataset writes
FEATURES = ("image", "label", "id")
_AGAIN = "Run `catsdogs prepare` again."


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
        settings: The settings that determine the output (``PrepareConfig.settings()``).
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
        splits = {
            name: _split(value, uri, f"splits.{name}") for name, value in top.dict_of("splits")
        }
        quarantined = tuple(
            Quarantined(item.get("file", str), item.get("reason", str))
            for item in top.objects("quarantined")
        )
        found = top.optional("found", dict)
        return cls(
            classes=tuple(_strings(top.get("classes", list), uri, "classes")),
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


def _split(data: Any, uri: str, where: str) -> Split:
    fields = _Fields(data, uri, where)
    shards = tuple(
        Shard(s.get("file", str), s.get("count", int), s.get("size", int), s.get("sha256", str))
        for s in fields.objects("shards")
    )
    return Split(fields.get("count", int), fields.counts("per_class"), shards)


def _found(data: Any, uri: str) -> Found:
    fields = _Fields(data, uri, "found")
    return Found(fields.counts("per_class"), fields.get("ignored", int))


def shard_name(split: str, index: int, total: int) -> str:
    """The file name of one shard, e.g. ``train-00000-of-00004.tfrecord``."""
    return f"{split}-{index:05d}-of-{total:05d}.tfrecord"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a local file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_manifest(dataset: str | Path) -> Manifest:
    """Read ``manifest.json`` of a prepared dataset (local or gs://), with a clear error if absent."""
    uri = storage.join(dataset, MANIFEST)
    if not storage.exists(uri):
        raise DatasetError(
            f"{dataset} is not a prepared dataset: it has no {MANIFEST}. Point --data at the output "
            "of `catsdogs prepare` (the manifest is written last, so a folder without it is an "
            "unfinished or failed preparation: run prepare again)."
        )
    return Manifest.from_json(storage.read_text(uri), uri)


def write_manifest(output: str, manifest: Manifest) -> None:
    """Write ``manifest.json`` to a local folder or gs:// prefix."""
    storage.write_text(storage.join(output, MANIFEST), manifest.to_json())


def verify_shards(dataset_dir: Path, manifest: Manifest, splits: tuple[str, ...]) -> None:
    """Check each shard of ``splits`` exists with the size and sha256 the manifest records."""
    for split in splits:
        for shard in manifest.splits[split].shards:
            path = dataset_dir / shard.file
            if not path.is_file():
                raise DatasetError(
                    f"Shard {shard.file} listed in the manifest is missing from {dataset_dir}. "
                    "The dataset is incomplete: run `catsdogs prepare` again."
                )
            if path.stat().st_size != shard.size or sha256_file(path) != shard.sha256:
                raise DatasetError(
                    f"Shard {shard.file} in {dataset_dir} does not match the checksum in "
                    f"{MANIFEST} (expected sha256 {shard.sha256[:12]}..., size {shard.size}). "
                    "The file is corrupt or was changed: run `catsdogs prepare` again."
                )


@contextlib.contextmanager
def local_dataset(
    dataset: str | Path, splits: tuple[str, ...] = SPLITS
) -> Iterator[tuple[Path, Manifest]]:
    """A verified local copy of a prepared dataset (the folder itself when local).

    Yields:
        ``(folder, manifest)``; only the shards of ``splits`` are fetched and checked.
    """
    manifest = load_manifest(dataset)
    for split in splits:
        if split not in manifest.splits:
            raise DatasetError(f"{dataset} has no {split!r} split (has: {list(manifest.splits)}).")
    if not storage.is_gcs(dataset):
        verify_shards(Path(dataset), manifest, splits)
        yield Path(dataset), manifest
        return
    with tempfile.TemporaryDirectory(prefix="catsdogs-data-") as tmp:
        for split in splits:
            for shard in manifest.splits[split].shards:
                storage.download_file(storage.join(dataset, shard.file), Path(tmp, shard.file))
        verify_shards(Path(tmp), manifest, splits)
        yield Path(tmp), manifest


def write_shard(path: Path, records: list[tuple[bytes, int, str]]) -> Shard:
    """Write ``(jpeg_bytes, label, id)`` records to one TFRecord file; returns its manifest entry."""
    import tensorflow as tf

    tmp = path.with_name(f".{path.name}.tmp")
    with tf.io.TFRecordWriter(str(tmp)) as writer:
        for image, label, ident in records:
            example = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                        "id": tf.train.Feature(
                            bytes_list=tf.train.BytesList(value=[ident.encode("utf-8")])
                        ),
                    }
                )
            )
            # deterministic: sorted feature keys, so a shard's bytes do not depend on the process
            writer.write(example.SerializeToString(deterministic=True))
    tmp.replace(path)
    return Shard(path.name, len(records), path.stat().st_size, sha256_file(path))


def shard_paths(dataset_dir: Path, manifest: Manifest, split: str) -> list[str]:
    """Local paths of the shards of one split, in manifest order."""
    return [str(dataset_dir / shard.file) for shard in manifest.splits[split].shards]


def read_split(
    dataset_dir: Path,
    manifest: Manifest,
    split: str,
    image_size: tuple[int, int] | None,
    *,
    with_ids: bool = False,
) -> Any:
    """A tf.data.Dataset of ``(image uint8 [H, W, 3], label int32)`` for one split, unbatched.

    Args:
        dataset_dir: Local folder (see ``local_dataset``).
        manifest: Its manifest.
        split: ``train``, ``val`` or ``test``.
        image_size: ``(height, width)`` to resize to (bilinear, as the models' own Resizing layer),
            or None to keep each image's size (then the dataset cannot be batched).
        with_ids: Also yield the record's id string as a third element.
    """
    import tensorflow as tf

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "id": tf.io.FixedLenFeature([], tf.string),
    }

    def parse(record: Any) -> Any:
        example = tf.io.parse_single_example(record, spec)
        image = tf.io.decode_jpeg(example["image"], channels=3)
        if image_size is not None:
            image = tf.image.resize(image, image_size, method="bilinear")
            image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        label = tf.cast(example["label"], tf.int32)
        if with_ids:
            return image, label, example["id"]
        return image, label

    files = shard_paths(dataset_dir, manifest, split)
    return tf.data.TFRecordDataset(files, num_parallel_reads=tf.data.AUTOTUNE).map(
        parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
