"""The prepared dataset on disk: TFRecord shards plus ``manifest.json``, and tf.data over them.

Layout of a prepared dataset folder (local or gs://), written by prepare_dataset:

    train-00000-of-00002.tfrecord ...   tf.train.Example records (see FEATURES)
    val-00000-of-00001.tfrecord ...
    test-00000-of-00001.tfrecord ...
    quality_report.md
    manifest.json                       written last: a folder without it is not a dataset

Each record: ``image`` (JPEG bytes, RGB, EXIF orientation applied), ``label`` (index into
``manifest["classes"]``), ``id`` (the source file's relative name).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from catsdogs.components.common import storage

MANIFEST = "manifest.json"
SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset folder that is missing, incomplete or corrupt."""


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


def load_manifest(dataset: str | Path) -> dict[str, Any]:
    """Read ``manifest.json`` of a prepared dataset (local or gs://), with a clear error if absent."""
    uri = storage.join(dataset, MANIFEST)
    if not storage.exists(uri):
        raise DatasetError(
            f"{dataset} is not a prepared dataset: it has no {MANIFEST}. Point --data at the output "
            "of `catsdogs prepare` (the manifest is written last, so a folder without it is an "
            "unfinished or failed preparation: run prepare again)."
        )
    try:
        manifest: dict[str, Any] = json.loads(storage.read_text(uri))
    except json.JSONDecodeError as error:
        raise DatasetError(
            f"{uri} is not valid JSON ({error}). Run `catsdogs prepare` again."
        ) from error
    for key in ("classes", "splits"):
        if key not in manifest:
            raise DatasetError(f"{uri} has no {key!r} key. Run `catsdogs prepare` again.")
    return manifest


def verify_shards(dataset_dir: Path, manifest: dict[str, Any], splits: tuple[str, ...]) -> None:
    """Check each shard of ``splits`` exists with the size and sha256 the manifest records."""
    for split in splits:
        for shard in manifest["splits"][split]["shards"]:
            path = dataset_dir / shard["file"]
            if not path.is_file():
                raise DatasetError(
                    f"Shard {shard['file']} listed in the manifest is missing from {dataset_dir}. "
                    "The dataset is incomplete: run `catsdogs prepare` again."
                )
            if path.stat().st_size != shard["size"] or sha256_file(path) != shard["sha256"]:
                raise DatasetError(
                    f"Shard {shard['file']} in {dataset_dir} does not match the checksum in "
                    f"{MANIFEST} (expected sha256 {shard['sha256'][:12]}..., size {shard['size']}). "
                    "The file is corrupt or was changed: run `catsdogs prepare` again."
                )


@contextlib.contextmanager
def local_dataset(
    dataset: str | Path, splits: tuple[str, ...] = SPLITS
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """A verified local copy of a prepared dataset (the folder itself when local).

    Yields:
        ``(folder, manifest)``; only the shards of ``splits`` are fetched and checked.
    """
    manifest = load_manifest(dataset)
    for split in splits:
        if split not in manifest["splits"]:
            raise DatasetError(
                f"{dataset} has no {split!r} split (has: {list(manifest['splits'])})."
            )
    if not storage.is_gcs(dataset):
        verify_shards(Path(dataset), manifest, splits)
        yield Path(dataset), manifest
        return
    with tempfile.TemporaryDirectory(prefix="catsdogs-data-") as tmp:
        for split in splits:
            for shard in manifest["splits"][split]["shards"]:
                storage.download_file(
                    storage.join(dataset, shard["file"]), Path(tmp, shard["file"])
                )
        verify_shards(Path(tmp), manifest, splits)
        yield Path(tmp), manifest


def write_shard(path: Path, records: list[tuple[bytes, int, str]]) -> dict[str, Any]:
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
            writer.write(example.SerializeToString())
    tmp.replace(path)
    return {
        "file": path.name,
        "count": len(records),
        "size": path.stat().st_size,
        "sha256": sha256_file(path),
    }


def shard_paths(dataset_dir: Path, manifest: dict[str, Any], split: str) -> list[str]:
    """Local paths of the shards of one split, in manifest order."""
    return [str(dataset_dir / shard["file"]) for shard in manifest["splits"][split]["shards"]]


def read_split(
    dataset_dir: Path,
    manifest: dict[str, Any],
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


def write_manifest(output: str, manifest: dict[str, Any]) -> None:
    """Write ``manifest.json`` (sorted keys, stable formatting) to a local folder or gs:// prefix."""
    storage.write_text(
        storage.join(output, MANIFEST), json.dumps(manifest, indent=2, sort_keys=True)
    )
