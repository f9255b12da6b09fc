"""tf.data over the TFRecord shards of a prepared dataset.

Each record: ``image`` (JPEG bytes, RGB, EXIF orientation applied), ``label`` (index into
``Manifest.classes``), ``id`` (the source file's relative name). The manifest lives in
``manifest.py``, the shards and ``Dataset`` in ``shards.py``; their names are re-exported here so
``records.X`` keeps naming the dataset's whole public surface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from catsdogs.components.common import images
from catsdogs.components.common.errors import DatasetError
from catsdogs.components.common.manifest import (
    CLASSES,
    MANIFEST,
    SPLITS,
    Found,
    Manifest,
    Quarantined,
    Shard,
    Split,
    load_manifest,
    shard_name,
    write_manifest,
)
from catsdogs.components.common.shards import (
    Dataset,
    local_dataset,
    sha256_file,
    verify_shards,
    write_shard,
)

__all__ = [
    "CLASSES",
    "FEATURES",
    "MANIFEST",
    "SPLITS",
    "DatasetError",
    "Dataset",
    "Found",
    "Manifest",
    "Quarantined",
    "Shard",
    "Split",
    "load_manifest",
    "local_dataset",
    "read_split",
    "sha256_file",
    "shard_name",
    "shard_paths",
    "verify_shards",
    "write_manifest",
    "write_shard",
]

FEATURES = ("image", "label", "id")


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
        image = images.decode_jpeg(example["image"])  # the one DCT setting (images.py)
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
