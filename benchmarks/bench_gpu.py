"""One prepared GPU run that measures it all (``make bench-gpu``; ``SMOKE=1`` for a CPU check).

Prints the TensorFlow build and the device, then:

1. VGG16 features at 150 px for 25,000 images (the 6,000 photos of train-6000 repeated, decoded
   from the shards with the product's tf.data code, not cached): images/s and wall time, fp32 vs
   mixed precision vs XLA (``train_transfer.features.extract_features``). Goal: <= 30 s.
2. The seed's CNN with its augmentation (``train_scratch.core.build_model``, the default policy of
   the device: mixed_float16 on a GPU): training images/s, one epoch of the 2,000 training images
   and the book's 100 epochs. Goal: >= 10,000 training images/s.
3. The input pipeline alone (decode + augment, as with ``xla``) against what the model consumes
   from in-memory batches: which one bounds.
4. Ours against the seed's ``ImageDataGenerator`` recipe (batch 20, generator fed to ``fit``) for
   one epoch on the same device.

    .venv/bin/python benchmarks/bench_gpu.py --source DIR --weights VGG16_NOTOP.h5
    .venv/bin/python benchmarks/bench_gpu.py --smoke     # tiny sizes, minutes on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_scratch import DEFAULT_SOURCE, SEED_AUGMENTATION, export_class_folders, prepared_dataset

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WEIGHTS = REPO.parent / "shared/weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
FULL = {"photos_per_class": 2000, "feature_images": 25_000, "cnn_per_class": 1000, "epochs": 100}
SMOKE = {"photos_per_class": 20, "feature_images": 64, "cnn_per_class": 20, "epochs": 2}


def environment() -> dict[str, Any]:
    """The TensorFlow build and the devices it sees."""
    import tensorflow as tf

    build = tf.sysconfig.get_build_info()
    gpus = tf.config.list_physical_devices("GPU")
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    return {
        "tensorflow": tf.__version__,
        "cuda": build.get("cuda_version", ""),
        "cudnn": build.get("cudnn_version", ""),
        "gpus": names,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }


def repeated_images(folder: Path, manifest: Any, count: int, batch: int) -> Any:
    """``count`` (image, label) pairs decoded from every split's shards, repeated, batched."""
    import tensorflow as tf
    from catsdogs.components.common import records

    splits = [records.read_split(folder, manifest, s, (150, 150)) for s in manifest.splits]
    data = splits[0]
    for other in splits[1:]:
        data = data.concatenate(other)
    data = data.repeat().take(count).batch(batch, num_parallel_calls=tf.data.AUTOTUNE)
    return data.map(lambda x, y: (x, tf.reshape(y, [-1, 1])), tf.data.AUTOTUNE).prefetch(
        tf.data.AUTOTUNE
    )


def bench_features(folder: Path, manifest: Any, images: int, weights: str) -> dict[str, Any]:
    """VGG16 features of ``images`` images: fp32, mixed precision and XLA (wall, images/s)."""
    import keras
    from catsdogs.components.train_transfer import core
    from catsdogs.components.train_transfer.features import extract_features

    policy = "mixed_float16" if environment()["gpus"] else "mixed_bfloat16"
    variants = {
        "fp32": ("float32", False),
        policy: (policy, False),
        "fp32 + XLA": ("float32", True),
        f"{policy} + XLA": (policy, True),
    }
    settings = core.TransferSettings(weights=weights)
    out = {}
    for name, (dtype, xla) in variants.items():
        keras.mixed_precision.set_global_policy(dtype)
        try:
            backbone, _ = core.load_backbone(settings)
            extractor = core.feature_extractor(backbone, settings)
            warm_up = repeated_images(folder, manifest, 128 + images % 128, 128)  # both shapes
            extract_features(extractor, warm_up, xla=xla)  # tracing / XLA compilation
            started = time.perf_counter()
            features, _ = extract_features(
                extractor, repeated_images(folder, manifest, images, 128), xla=xla
            )
            wall = time.perf_counter() - started
        finally:
            keras.mixed_precision.set_global_policy("float32")
        out[name] = {"wall_s": round(wall, 2), "images_per_s": round(images / wall, 1)}
        print(
            f"VGG16 features, {name:22} {images} images in {wall:7.1f} s: "
            f"{images / wall:8.0f} images/s (goal: all in <= 30 s); {features.shape}",
            flush=True,
        )
    return out


def time_fit(model: Any, data: Any, epochs: int, **kwargs: Any) -> float:
    """Seconds of ``model.fit(data, epochs=epochs)``."""
    started = time.perf_counter()
    model.fit(data, epochs=epochs, verbose=0, **kwargs)
    return time.perf_counter() - started


def bench_cnn(folder: Path, manifest: Any, epochs: int, tmp: Path) -> dict[str, Any]:
    """The seed's CNN: epochs, images/s, input pipeline vs consumption, the seed's generator."""
    import keras
    import tensorflow as tf
    from catsdogs.components.common.training.augmentation import augmentation_layers
    from catsdogs.components.common.training.data import input_pipeline
    from catsdogs.components.common.training.device import restore_device, setup_device
    from catsdogs.components.train_scratch import core
    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    count, val_count = manifest.splits["train"].count, manifest.splits["val"].count
    settings = core.ScratchSettings(epochs=epochs)
    out: dict[str, Any] = {"train_images": count, "val_images": val_count}
    info = setup_device(settings)
    try:
        with info.strategy.scope():
            model = core.build_model(settings)
            train, val = core.datasets(folder, manifest, settings)
            first = time_fit(model, train, 1, validation_data=val)  # tracing + cache filling
            one = time_fit(model, train, 1, validation_data=val)
            train_only = time_fit(model, train, 1)
            book = time_fit(model, train, epochs, validation_data=val)
            x, y = next(iter(train))
            memory = tf.data.Dataset.from_tensors((x, y)).repeat(max(1, count // len(x)))
            consumed = time_fit(model, memory, 1)
            consumed_ips = len(x) * max(1, count // len(x)) / consumed
    finally:
        restore_device(info)
    pipeline = input_pipeline(
        folder,
        manifest,
        "train",
        image_size=settings.image_size,
        batch_size=32,
        seed=1,
        training=True,
        augmentation=augmentation_layers(1),
    )
    started = time.perf_counter()
    for _ in pipeline:  # decodes and fills the cache
        pass
    decode_ips = count / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in pipeline:
        pass
    pipeline_ips = count / (time.perf_counter() - started)
    out.update(
        device=info.describe(),
        first_epoch_s=round(first, 2),
        epoch_s=round(one, 2),
        train_images_per_s=round(count / train_only, 1),
        book_epochs=epochs,
        book_wall_s=round(book, 1),
        book_train_images_per_s=round(count * epochs / book, 1),
        model_consumes_images_per_s=round(consumed_ips, 1),
        input_pipeline_images_per_s=round(pipeline_ips, 1),
        input_pipeline_first_pass_images_per_s=round(decode_ips, 1),
        bound_by="input pipeline" if pipeline_ips < consumed_ips else "model (device)",
    )
    print(
        f"Seed's CNN on {info.describe()}: first epoch {first:.1f} s (tracing), one epoch of "
        f"{count} + val {val_count} {one:.2f} s, training {count / train_only:.0f} images/s "
        "(goal >= 10,000)",
        flush=True,
    )
    print(
        f"The book's {epochs} epochs: {book:.1f} s ({count * epochs / book:.0f} training "
        "images/s with validation)",
        flush=True,
    )
    print(
        f"Input pipeline alone: decode + augment (first pass) {decode_ips:.0f} images/s, "
        f"cached + augment {pipeline_ips:.0f} images/s; the model "
        f"consumes {consumed_ips:.0f} images/s from memory: bound by {out['bound_by']}",
        flush=True,
    )

    train_dir, val_dir = tmp / "train", tmp / "validation"
    export_class_folders(folder, manifest, "train", train_dir)
    export_class_folders(folder, manifest, "val", val_dir)
    keras.utils.set_random_seed(1337)
    seed_model = core.build_model(core.ScratchSettings(augment=False))
    flow = ImageDataGenerator(rescale=1.0 / 255, **SEED_AUGMENTATION).flow_from_directory(
        str(train_dir), target_size=(150, 150), batch_size=20, class_mode="binary"
    )
    val_flow = ImageDataGenerator(rescale=1.0 / 255).flow_from_directory(
        str(val_dir), target_size=(150, 150), batch_size=20, class_mode="binary"
    )
    steps = {"steps_per_epoch": max(1, count // 20), "validation_steps": max(1, val_count // 20)}
    time_fit(seed_model, flow, 1, validation_data=val_flow, **steps)  # warm-up
    seed = time_fit(seed_model, flow, 1, validation_data=val_flow, **steps)
    out.update(seed_epoch_s=round(seed, 2), ours_vs_seed_epoch=round(seed / one, 2))
    print(
        f"One epoch, ours {one:.2f} s vs the seed's ImageDataGenerator recipe {seed:.2f} s: "
        f"{seed / one:.2f}x",
        flush=True,
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(DEFAULT_SOURCE), help="train-6000 photos")
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="VGG16 notop .h5")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (a CPU check)")
    parser.add_argument("--output", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sizes = SMOKE if args.smoke else FULL
    weights = args.weights if Path(args.weights).is_file() else "none"
    from catsdogs.components.common import records

    env = environment()
    print(
        f"TensorFlow {env['tensorflow']} (CUDA {env['cuda'] or '-'}, cuDNN "
        f"{env['cudnn'] or '-'}); GPUs: {', '.join(env['gpus']) or 'none'}; "
        f"{env['cpus']} CPUs; {env['date']}; VGG16 weights: {weights}",
        flush=True,
    )
    results: dict[str, Any] = {"environment": env, "smoke": args.smoke}
    photos = prepared_dataset(
        argparse.Namespace(data=None, source=args.source, limit=sizes["photos_per_class"])
    )
    cnn_data = prepared_dataset(
        argparse.Namespace(data=None, source=args.source, limit=sizes["cnn_per_class"])
    )
    with records.local_dataset(photos, records.SPLITS) as (folder, manifest):
        results["features"] = bench_features(folder, manifest, sizes["feature_images"], weights)
    with (
        records.local_dataset(cnn_data, ("train", "val")) as (folder, manifest),
        tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp,
    ):
        results["cnn"] = bench_cnn(folder, manifest, sizes["epochs"], Path(tmp))
    print(json.dumps(results, indent=2))
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
