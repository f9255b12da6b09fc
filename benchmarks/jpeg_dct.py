"""How much the JPEG DCT setting moves accuracy: fast (TensorFlow's default) against accurate (Pillow's).

Issue 21, finding 14: training decoded with tf.io.decode_jpeg's default (the fast integer DCT),
serving and predict with the accurate one. On the book's split of real photos (train ids 0-999,
test ids 1500-1999 of each class, ../shared/data/dogs-vs-cats/train-6000), a logistic head on
ImageNet MobileNetV2 features (../shared/weights) is trained on each decode and scored on both:

    .venv/bin/python benchmarks/jpeg_dct.py [--size 160]

Prints accuracy for each (train decode, test decode), how many test predictions flip between
decodes, and the largest change of P(dog).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
PHOTOS = SHARED / "data" / "dogs-vs-cats" / "train-6000"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def features(files: list[Path], dct: str, size: int, backbone) -> np.ndarray:
    import tensorflow as tf

    def load(path):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3, dct_method=dct)
        image = tf.image.resize(image, (size, size), method="bilinear")
        return tf.keras.applications.mobilenet_v2.preprocess_input(image)

    data = tf.data.Dataset.from_tensor_slices([str(f) for f in files])
    data = data.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(32).prefetch(2)
    return np.concatenate([backbone(batch, training=False).numpy() for batch in data])


def main() -> None:
    import keras
    import tensorflow as tf

    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=160)
    args = parser.parse_args()
    split = {
        "train": [PHOTOS / f"{c}.{i}.jpg" for c in ("cat", "dog") for i in range(1000)],
        "test": [PHOTOS / f"{c}.{i}.jpg" for c in ("cat", "dog") for i in range(1500, 2000)],
    }
    labels = {k: np.array([0] * (len(v) // 2) + [1] * (len(v) // 2)) for k, v in split.items()}
    base = keras.applications.MobileNetV2(
        include_top=False,
        weights=str(WEIGHTS),
        input_shape=(args.size, args.size, 3),
        pooling="avg",
    )
    methods = ("INTEGER_FAST", "INTEGER_ACCURATE")
    found = {(s, m): features(split[s], m, args.size, base) for s in split for m in methods}
    results: dict[str, object] = {}
    scores = {}
    for trained in methods:
        keras.utils.set_random_seed(0)
        head = keras.Sequential([keras.Input((found["train", trained].shape[1],)),
                                 keras.layers.Dense(1, activation="sigmoid")])  # fmt: skip
        head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
        head.fit(found["train", trained], labels["train"], epochs=30, batch_size=64, verbose=0)
        for tested in methods:
            p = head.predict(found["test", tested], verbose=0).ravel()
            scores[trained, tested] = p
            accuracy = float(np.mean((p >= 0.5) == labels["test"]))
            results[f"train {trained} / test {tested}"] = round(accuracy, 4)
        fast, accurate = scores[trained, methods[0]], scores[trained, methods[1]]
        results[f"train {trained}: flipped test predictions"] = int(
            np.sum((fast >= 0.5) != (accurate >= 0.5))
        )
        results[f"train {trained}: max |dP|"] = round(float(np.max(np.abs(fast - accurate))), 5)

    def decoded(path: Path, dct: str) -> np.ndarray:
        return tf.io.decode_jpeg(path.read_bytes(), channels=3, dct_method=dct).numpy().astype(int)

    pixels = [np.abs(decoded(f, methods[0]) - decoded(f, methods[1])) for f in split["test"][:200]]
    results["pixel levels apart (200 test photos): max"] = int(max(p.max() for p in pixels))
    results["pixel levels apart: share of values that differ"] = round(
        float(np.mean([np.mean(p > 0) for p in pixels])), 4
    )
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
