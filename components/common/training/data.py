"""Training input: tf.data over a prepared split (decode, cache, shuffle, batch, augment, prefetch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from catsdogs.components.common import records
from catsdogs.components.common.records import Manifest
from catsdogs.components.common.training.device import global_batch_size
from catsdogs.components.common.training.settings import TrainingSettings

# Decoded images are cached in memory when they take at most this much (uint8 pixels).
DEFAULT_CACHE_LIMIT_BYTES = 4 << 30


def fits_in_memory(count: int, image_size: tuple[int, int], limit_bytes: int) -> bool:
    """Whether ``count`` decoded uint8 RGB images of ``image_size`` take at most ``limit_bytes``."""
    return count * image_size[0] * image_size[1] * 3 <= limit_bytes


def input_pipeline(
    dataset_dir: Path,
    manifest: Manifest,
    split: str,
    *,
    image_size: tuple[int, int],
    batch_size: int,
    seed: int,
    training: bool,
    augmentation: Any = None,
    cache_limit_bytes: int = DEFAULT_CACHE_LIMIT_BYTES,
) -> Any:
    """Batched ``(uint8 images [N, H, W, 3], float32 labels [N, 1])`` of one prepared split.

    Records are read and JPEG-decoded in parallel (``records.read_split``), cached in memory when
    the decoded split fits in ``cache_limit_bytes``, shuffled with ``seed`` (reshuffled every
    epoch) when ``training``, batched (``batch_size`` per replica of the strategy in scope, see
    ``device.global_batch_size``), optionally augmented (``augmentation`` is mapped over
    batches with ``training=True``; returns float32 then) and prefetched.

    Args:
        dataset_dir: Local dataset folder (from ``records.local_dataset``).
        manifest: Its manifest.
        split: ``train``, ``val`` or ``test``.
        image_size: ``(height, width)`` to resize to.
        batch_size: Images per batch and replica (the last batch may be smaller).
        seed: Shuffle seed.
        training: Shuffle (and augment, if given).
        augmentation: A Keras layer to map over training batches, or None (e.g. when the model
            applies it itself, as train_scratch's does).
        cache_limit_bytes: Cache decoded images only up to this size (0 = never).
    """
    import tensorflow as tf

    count = manifest.splits[split].count
    data = records.read_split(dataset_dir, manifest, split, image_size)
    data = data.apply(tf.data.experimental.assert_cardinality(count))
    if cache_limit_bytes and fits_in_memory(count, image_size, cache_limit_bytes):
        data = data.cache()
    if training:
        data = data.shuffle(max(1, min(count, 10_000)), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(
        global_batch_size(batch_size), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    data = data.map(
        lambda x, y: (x, tf.cast(tf.reshape(y, [-1, 1]), tf.float32)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if training and augmentation is not None:
        data = data.map(
            lambda x, y: (augmentation(tf.cast(x, tf.float32), training=True), y),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return data.prefetch(tf.data.AUTOTUNE)


def default_datasets(
    folder: Path, manifest: Manifest, settings: TrainingSettings
) -> tuple[Any, Any]:
    """``(train, val)`` from ``input_pipeline``: shuffled train, ordered val, no augmentation."""
    size, batch, seed = settings.image_size, settings.batch_size, settings.seed
    train = input_pipeline(
        folder, manifest, "train", image_size=size, batch_size=batch, seed=seed, training=True
    )
    val = input_pipeline(
        folder, manifest, "val", image_size=size, batch_size=batch, seed=seed, training=False
    )
    return train, val
