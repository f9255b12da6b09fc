"""Test accuracy of train_scratch on real photos (book: 82% for this model; our goal: 86%).

Trains on the default 1000/500/500-per-class split of ../shared/data/dogs-vs-cats/train-6000
(prepared into the cache on first use, or --data), then scores model.keras on the test split.
Training is resumable: rerun the same command after an interruption and it continues.

    .venv/bin/python benchmarks/accuracy_scratch.py --epochs 100           # the full run
    .venv/bin/python benchmarks/accuracy_scratch.py --epochs 1 --limit 40  # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench_scratch import DEFAULT_SOURCE, prepared_dataset
from common import environment_summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="prepared dataset (default: prepare --source into cache)")
    parser.add_argument("--source", default=str(DEFAULT_SOURCE))
    parser.add_argument("--limit", type=int, default=0, help="training images per class (smoke)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--early-stopping-patience", type=int, default=0)
    parser.add_argument("--output", help="model folder (default: in the cache, per settings)")
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from catsdogs.components.common import config, records
    from catsdogs.components.common.training.data import input_pipeline
    from catsdogs.components.train_scratch import core

    data = prepared_dataset(args)
    settings = core.ScratchSettings(
        epochs=args.epochs,
        batch_size=args.batch_size,
        early_stopping_patience=args.early_stopping_patience,
    )
    output = args.output or str(
        config.cache_dir()
        / "accuracy"
        / f"scratch-{Path(data).name}-e{args.epochs}-b{args.batch_size}-p{args.early_stopping_patience}"
    )
    started = time.perf_counter()
    result = core.train_scratch(data, output, settings)
    wall = time.perf_counter() - started
    model = keras.models.load_model(Path(output, "model.keras"))
    with records.local_dataset(data, ("test",)) as (folder, manifest):
        test = input_pipeline(
            folder,
            manifest,
            "test",
            image_size=settings.image_size,
            batch_size=64,
            seed=0,
            training=False,
        )
        loss, accuracy = model.evaluate(test, verbose=0)
        test_images = manifest.splits["test"].count
    summary = {
        "test_accuracy": round(float(accuracy), 4),
        "test_loss": round(float(loss), 4),
        "test_images": test_images,
        "book_accuracy": 0.82,
        "goal_accuracy": 0.86,
        "epochs_run": result.metrics["epochs_run"],
        "best_val_accuracy": result.metrics.get("best_val_accuracy"),
        "train_seconds": result.metrics["train_seconds"],
        "wall_seconds_this_call": round(wall, 1),
        "device": result.metrics.get("device"),
        "output": output,
        "data": data,
        **environment_summary(),
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
