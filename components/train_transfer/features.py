"""The features cache of train_transfer's ``features`` mode: the backbone run once per image.

Features of every split are kept under a folder per key (``<backbone>-<hash>/``: ``<split>.npz``
with ``features`` and ``labels``, then ``features.json`` last, holding the key and, per split, the
file's sha256 and size, the features' count and shape and the images per class). A rerun with the
same backbone, weights, image size, dtype policy and data reuses them instead of running the
backbone, whatever head it trains.

A cached split is used only when its file has the recorded sha256 and size, its arrays have the
recorded shape and its labels agree with the dataset's manifest (count and images per class);
anything else (a truncated or rewritten file, a wrong shape, flipped labels, a cache of the
previous format without checksums) is logged and the features are computed again, replacing it.
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
FEATURES_FORMAT = 2  # 2: per-split sha256, size and images per class (1 had no checksums)


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


def load_features(
    folder: str, key: dict[str, Any], manifest: records.Manifest, log: Log | None = None
) -> dict[str, tuple[Any, Any]] | None:
    """The cached features of each split under ``folder``, or None when they cannot be trusted.

    None when there is no cache with this ``key``, or when a split's file, arrays or labels do
    not match ``features.json`` and the dataset's ``manifest`` (``log`` is told why).
    """
    meta_uri = storage.join(folder, FEATURES_FILE)
    if not storage.exists(meta_uri):
        return None
    try:
        meta = json.loads(storage.read_text(meta_uri))
    except (json.JSONDecodeError, UnicodeDecodeError):
        meta = None
    if not isinstance(meta, dict) or meta.get("key") != key:
        return None
    try:
        return _verified_splits(folder, meta, manifest)
    except _Mismatch as mismatch:
        if log is not None:
            log(f"Cached features in {folder} do not match ({mismatch}); computing them again.")
        return None


class _Mismatch(Exception):
    """A cached split that does not match its record or the dataset."""


def _verified_splits(
    folder: str, meta: dict[str, Any], manifest: records.Manifest
) -> dict[str, tuple[Any, Any]]:
    import numpy as np

    recorded = meta.get("splits")
    wanted = [name for name in records.SPLITS if name in manifest.splits]
    if not isinstance(recorded, dict) or sorted(recorded) != sorted(wanted):
        raise _Mismatch(f"splits {sorted(recorded or [])}, the dataset has {sorted(wanted)}")
    out = {}
    with tempdirs.temporary("features") as tmp:
        for split in wanted:
            entry = recorded[split]
            local = Path(tmp, f"{split}.npz")
            try:
                storage.download_file(storage.join(folder, f"{split}.npz"), local)
            except FileNotFoundError as error:
                raise _Mismatch(f"{split}.npz is missing") from error
            digest = _file_sha256(local)
            if not isinstance(entry, dict) or entry.get("sha256") != digest:
                raise _Mismatch(f"{split}.npz has sha256 {digest[:12]}, not the recorded one")
            try:
                with np.load(local) as arrays:
                    features, labels = arrays["features"], arrays["labels"]
            except (OSError, ValueError, KeyError) as error:
                raise _Mismatch(f"{split}.npz cannot be read ({type(error).__name__})") from error
            _check_split(split, features, labels, entry, manifest)
            out[split] = (features, labels)
    return out


def _check_split(
    split: str, features: Any, labels: Any, entry: dict[str, Any], manifest: records.Manifest
) -> None:
    """Shapes as recorded; labels 0/1 with the manifest's count and images per class."""
    import numpy as np

    expected = manifest.splits[split]
    count = expected.count
    if list(features.shape) != [count, *entry.get("shape", [])] or labels.shape != (count, 1):
        raise _Mismatch(
            f"{split} features {features.shape} and labels {labels.shape}, expected {count} "
            f"images of shape {entry.get('shape')}"
        )
    if not np.isin(labels, (0.0, 1.0)).all():
        raise _Mismatch(f"{split} labels are not all 0 or 1")
    per_class = {
        manifest.classes[0]: int((labels == 0).sum()),
        manifest.classes[1]: int(labels.sum()),
    }
    if per_class != dict(expected.per_class) or entry.get("per_class") != per_class:
        raise _Mismatch(f"{split} labels count {per_class}, the dataset {dict(expected.per_class)}")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_features(
    folder: str,
    key: dict[str, Any],
    splits: dict[str, tuple[Any, Any]],
    seconds: float,
    classes: tuple[str, ...] = records.CLASSES,
) -> None:
    """Write ``<split>.npz`` (features, labels) per split, then ``features.json`` last.

    ``features.json`` records each file's sha256 and size and each split's images per class.
    """
    import numpy as np

    entries: dict[str, dict[str, Any]] = {}
    with tempdirs.temporary("features") as tmp:
        for split, (features, labels) in splits.items():
            local = Path(tmp, f"{split}.npz")
            np.savez(local, features=features, labels=labels)
            flat = np.asarray(labels).reshape(-1)
            entries[split] = {
                "count": int(len(features)),
                "shape": list(features.shape[1:]),
                "sha256": _file_sha256(local),
                "size": local.stat().st_size,
                "per_class": {
                    classes[0]: int((flat == 0).sum()),
                    classes[1]: int((flat == 1).sum()),
                },
            }
            storage.upload_file(local, storage.join(folder, f"{split}.npz"))
    meta = {"key": key, "splits": entries, "extract_seconds": round(seconds, 3)}
    storage.write_text(
        storage.join(folder, FEATURES_FILE), json.dumps(meta, indent=2, sort_keys=True)
    )


def compute_features(
    data: str | records.Dataset,
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
    dataset = data if isinstance(data, records.Dataset) else records.Dataset.open(data)
    manifest = dataset.manifest
    for base in locations:
        found = load_features(key_folder(base, key), key, manifest, log)
        if found is not None:
            source = base
            log(f"Reusing cached {settings.backbone} features from {key_folder(base, key)}.")
            break
    if found is None:
        extractor = make_extractor()
        found, started = {}, time.monotonic()
        splits = tuple(s for s in records.SPLITS if s in manifest.splits)
        with records.local_dataset(dataset, splits) as (folder, local_manifest):
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
            save_features(key_folder(base, key), key, found, seconds, manifest.classes)
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
