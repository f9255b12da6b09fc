"""Accuracy of one train_scratch candidate on the book's split and on the "new data" batch.

The book's split is ids 0-1999 of ../shared/data/dogs-vs-cats/train-6000 prepared 1000/500/500 per
class; ids 2000-2999 (which no split uses) are a second, independent test set of 2,000 photos (see
accuracy_data.py). Both are prepared once into --cache. Prints one Markdown table row: validation
accuracy (what candidates are chosen by), then test and new-data accuracy with 95% Wilson intervals.
Training is resumable: rerun the same command after an interruption and it continues.

    .venv/bin/python benchmarks/accuracy_scratch.py --epochs 100 --steps-per-epoch 100   # the book
    .venv/bin/python benchmarks/accuracy_scratch.py --epochs 15 --mixed-precision bf16
    .venv/bin/python benchmarks/accuracy_scratch.py --epochs 15 --augmentation strong
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from accuracy_data import book_dataset, new_data_dataset
from common import environment_summary

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared/data/dogs-vs-cats/train-6000"


def score(model, dataset: str, image_size: tuple[int, int]) -> dict[str, float]:
    """Accuracy and its Wilson interval of ``model`` on the test split of ``dataset``."""
    import numpy as np
    from catsdogs.components.common import records
    from catsdogs.components.common.training.data import input_pipeline
    from catsdogs.components.evaluate.metrics import wilson_interval

    with records.local_dataset(dataset, ("test",)) as (folder, manifest):
        pipe = input_pipeline(
            folder, manifest, "test", image_size=image_size, batch_size=64, seed=0, training=False
        )
        right = total = 0
        for images, labels in pipe:
            predicted = np.asarray(model(images, training=False)).reshape(-1) >= 0.5
            right += int(np.sum(predicted == (np.asarray(labels).reshape(-1) == 1)))
            total += len(predicted)
    low, high = wilson_interval(right, total)
    return {"accuracy": right / total, "low": low, "high": high, "images": total}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--cache", type=Path, help="default: <CATSDOGS_CACHE>/accuracy-scratch")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--steps-per-epoch", type=int, default=0)
    parser.add_argument("--architecture", default="seed")
    parser.add_argument("--augmentation", default="seed")
    parser.add_argument("--mixed-precision", default="auto")
    parser.add_argument("--learning-rate", type=float, default=None)
    parser.add_argument("--image-size", type=int, default=None)
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from catsdogs.components.common import config
    from catsdogs.components.train_scratch import core

    cache = args.cache or config.cache_dir() / "accuracy-scratch"
    if not args.source.is_dir():
        sys.exit(f"Error: {args.source} is not a folder of photos; pass --source DIR.")
    data, new_data = book_dataset(args.source, cache), new_data_dataset(args.source, cache)
    values: dict[str, object] = {
        "epochs": args.epochs,
        "steps_per_epoch": args.steps_per_epoch,
        "architecture": args.architecture,
        "augmentation": args.augmentation,
        "mixed_precision": args.mixed_precision,
    }
    if args.learning_rate is not None:
        values["learning_rate"] = args.learning_rate
    if args.image_size is not None:
        values["image_size"] = (args.image_size, args.image_size)
    settings = core.ScratchSettings(**values)  # type: ignore[arg-type]
    name = "-".join(f"{key}={value}" for key, value in sorted(values.items())).replace(" ", "")
    output = cache / "models" / name
    started = time.perf_counter()
    result = core.train_scratch(data, str(output), settings)
    model = keras.models.load_model(output / "model.keras")
    test, new = score(model, data, settings.image_size), score(model, new_data, settings.image_size)
    summary = {
        "settings": values,
        "best_val_accuracy": result.metrics.get("best_val_accuracy"),
        "epochs_run": result.metrics["epochs_run"],
        "seconds_per_epoch": result.metrics.get("seconds_per_epoch"),
        "device": result.metrics.get("device"),
        "test": test,
        "new_data": new,
        "wall_seconds_this_call": round(time.perf_counter() - started, 1),
        "output": str(output),
        **environment_summary(),
    }
    print(json.dumps(summary, indent=2))
    label = ", ".join(f"{key} {value}" for key, value in values.items())
    print(
        f"| {label} | {summary['best_val_accuracy']:.1%} | {test['accuracy']:.1%} "
        f"({test['low']:.1%}-{test['high']:.1%}) | {new['accuracy']:.1%} "
        f"({new['low']:.1%}-{new['high']:.1%}) |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
