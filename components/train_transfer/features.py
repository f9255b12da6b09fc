"""The features cache of train_transfer's ``features`` mode: the backbone run once per image.

Features of every split are kept under a folder per key (``<backbone>-<hash>/``: ``<split>.npz``
with ``features`` and ``labels``, then ``features.json`` last, holding the key). A rerun with the
same backbone, weights, image size, dtype policy and data reuses them instead of running the
backbone, whatever head it trains.
"""

from __future__ import annotations

import hashlib
import json
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catsdogs.components.common import records, storage, tempdirs
from catsdogs.components.common.progress import Progress
from catsdogs.components.common.training.checkpoint import Log
from catsdogs.components.common.training.data import input_pipeline
from catsdogs.components.common.training.device import global_batch_size

if TYPE_CHECKING:
    from catsdogs.components.train_transfer.settings import TransferSettings

FEATURES_FILE = "features.json"
FEATURES_FORMAT = 1


def features_key(
    settings: TransferSettings, weights_fingerprint: str, manifest: records.Manifest
) -> dict[str, Any]:
    """Everything the cached features depend on; equal keys mean the features can be reused."""
    import keras

    return {
        "format": FEATURES_FORMAT,
        "backbone": settings.backbone,
        "constructor": settings.spec.constructor,
        "weights": weights_fingerprint,
        "image_size": list(settings.image_size),
        "pooling": settings.resolved_pooling,
        "dtype_policy": keras.mixed_precision.global_policy().name,
        "dataset": manifest.identity(),
        "keras": keras.__version__,
    }


def key_folder(base: str, key: dict[str, Any]) -> str:
    """The folder under ``base`` that holds the features of ``key``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return storage.join(base, f"{key['backbone']}-{digest}")


def extract_features(
    extractor: Any, images: Any, *, xla: bool = False, progress: Progress | None = None
) -> tuple[Any, Any]:
    """Run ``extractor`` once over a batched ``(images, labels)`` dataset, on every replica.

    Each batch is split across the replicas of the strategy in scope (every GPU, see
    ``training.device``) and gathered back in order; with one device it is one compiled call a
    batch.

    Args:
        extractor: A Keras model, pixels -> features.
        images: Batched ``(images, labels)`` dataset.
        xla: Compile the extractor's call with XLA (``jit_compile``).
        progress: Told the images of each batch once its features are back.

    Returns:
        ``(features float32 [N, ...], labels float32 [N, 1])`` as numpy arrays.
    """
    import numpy as np
    import tensorflow as tf

    strategy = tf.distribute.get_strategy()
    step = _compiled_step(extractor, xla)
    features, labels = [], []
    for x, y in strategy.experimental_distribute_dataset(images):
        out = strategy.run(step, args=(x,))
        features.append(strategy.gather(out, axis=0).numpy())
        labels.append(strategy.gather(y, axis=0).numpy())
        if progress is not None:
            progress.update(len(labels[-1]))
    return np.concatenate(features), np.concatenate(labels).astype("float32")


def _compiled_step(extractor: Any, xla: bool) -> Any:
    """The extractor's call as one tf.function per extractor and ``xla`` (traced once, reused)."""
    import tensorflow as tf

    steps = _STEPS.setdefault(extractor, {})
    if xla not in steps:

        @tf.function(jit_compile=xla)
        def step(x: Any) -> Any:
            return tf.cast(extractor(x, training=False), tf.float32)

        steps[xla] = step
    return steps[xla]


_STEPS: weakref.WeakKeyDictionary[Any, dict[bool, Any]] = weakref.WeakKeyDictionary()


def load_features(folder: str, key: dict[str, Any]) -> dict[str, tuple[Any, Any]] | None:
    """The cached features of each split under ``folder`` when their key equals ``key``."""
    import numpy as np

    meta_uri = storage.join(folder, FEATURES_FILE)
    if not storage.exists(meta_uri):
        return None
    try:
        meta = json.loads(storage.read_text(meta_uri))
    except json.JSONDecodeError:
        return None
    if meta.get("key") != key:
        return None
    out = {}
    with tempdirs.temporary("features") as tmp:
        for split in meta["splits"]:
            local = Path(tmp, f"{split}.npz")
            storage.download_file(storage.join(folder, f"{split}.npz"), local)
            with np.load(local) as arrays:
                out[split] = (arrays["features"], arrays["labels"])
    return out


def save_features(
    folder: str, key: dict[str, Any], splits: dict[str, tuple[Any, Any]], seconds: float
) -> None:
    """Write ``<split>.npz`` (features, labels) per split, then ``features.json`` last."""
    import numpy as np

    with tempdirs.temporary("features") as tmp:
        for split, (features, labels) in splits.items():
            local = Path(tmp, f"{split}.npz")
            np.savez(local, features=features, labels=labels)
            storage.upload_file(local, storage.join(folder, f"{split}.npz"))
    meta = {
        "key": key,
        "splits": {
            name: {"count": int(len(f)), "shape": list(f.shape[1:])}
            for name, (f, _) in splits.items()
        },
        "extract_seconds": round(seconds, 3),
    }
    storage.write_text(
        storage.join(folder, FEATURES_FILE), json.dumps(meta, indent=2, sort_keys=True)
    )


def compute_features(
    data: str,
    make_extractor: Callable[[], Any],
    settings: TransferSettings,
    key: dict[str, Any],
    locations: list[str],
    log: Log,
) -> dict[str, tuple[Any, Any]]:
    """Features of every split, from a cache or by running the backbone once per image.

    The first of ``locations`` that holds features with the same ``key`` is used; otherwise
    ``make_extractor()`` (pixels -> features) runs once over each split. The features are then
    stored in every other location.
    """
    found, source = None, ""
    for base in locations:
        found = load_features(key_folder(base, key), key)
        if found is not None:
            source = base
            log(f"Reusing cached {settings.backbone} features from {key_folder(base, key)}.")
            break
    if found is None:
        extractor = make_extractor()
        found, started = {}, time.monotonic()
        manifest = records.load_manifest(data)
        splits = tuple(s for s in records.SPLITS if s in manifest.splits)
        with records.local_dataset(data, splits) as (folder, local_manifest):
            for split in splits:
                images = input_pipeline(
                    folder,
                    local_manifest,
                    split,
                    image_size=settings.image_size,
                    batch_size=settings.batch_size,
                    seed=settings.seed,
                    training=False,
                    cache_limit_bytes=0,
                )
                split_start = time.monotonic()
                with Progress(f"Features of {split}", local_manifest.splits[split].count) as bar:
                    found[split] = extract_features(
                        extractor, images, xla=settings.xla, progress=bar
                    )
                log(
                    f"Features of {split}: {found[split][0].shape} in "
                    f"{time.monotonic() - split_start:.1f} s (backbone run once per image)."
                )
        seconds = time.monotonic() - started
    else:
        seconds = 0.0
    for base in locations:
        if base != source:
            save_features(key_folder(base, key), key, found, seconds)
    return found


def feature_datasets(
    splits: dict[str, tuple[Any, Any]], settings: TransferSettings
) -> tuple[Any, Any]:
    """``(train, val)`` batches of features and labels: shuffled train, ordered val.

    Batches hold ``settings.batch_size`` per replica (``device.global_batch_size``).
    """
    import tensorflow as tf

    train_x, train_y = splits["train"]
    batch = global_batch_size(settings.batch_size)
    train = (
        tf.data.Dataset.from_tensor_slices((train_x, train_y))
        .shuffle(len(train_x), seed=settings.seed, reshuffle_each_iteration=True)
        .batch(batch)
        .prefetch(tf.data.AUTOTUNE)
    )
    val = tf.data.Dataset.from_tensor_slices(splits["val"]).batch(batch)
    return train, val.prefetch(tf.data.AUTOTUNE)
