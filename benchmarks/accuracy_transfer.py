"""train_transfer test accuracy of each mode (VGG16) and of MobileNetV2 ``features``.

Trains on the default 1000/500/500-per-class split of ../shared/data/dogs-vs-cats/train-6000
(prepared into the cache on first use, or --data) with the ImageNet notop weight files of
../shared/weights, then scores each saved model.keras on the test split. Each run writes its model
folder into the cache (one per settings), so an interrupted script resumes where it stopped and a
finished run is not trained again; features are cached too, so the VGG16 ``features`` run and
reruns with other heads skip the backbone.

Goals (book): VGG16 features >= 96% (90%), frozen >= 96.5% (96%), fine-tune >= 97.5% (97%);
MobileNetV2 features >= 98.5%.

    .venv/bin/python benchmarks/accuracy_transfer.py                          # all four runs
    .venv/bin/python benchmarks/accuracy_transfer.py --runs vgg16:features    # one run
    .venv/bin/python benchmarks/accuracy_transfer.py --limit 20 --epochs 1 --fine-tune-epochs 1
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

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO.parent / "shared/weights"
DEFAULT_WEIGHTS = {
    "vgg16": WEIGHTS / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "mobilenet_v2": WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
}
GOALS = {
    "vgg16:features": (0.96, 0.90),
    "vgg16:frozen": (0.965, 0.96),
    "vgg16:fine-tune": (0.975, 0.97),
    "mobilenet_v2:features": (0.985, None),
}


def test_accuracy(model_dir: str, data: str, image_size: tuple[int, int]) -> tuple[float, float]:
    """Loss and accuracy of model.keras on the test split (raw pixels in, as served)."""
    import keras
    from catsdogs.components.common import records
    from catsdogs.components.common.training.data import input_pipeline

    model = keras.models.load_model(Path(model_dir, "model.keras"))
    with records.local_dataset(data, ("test",)) as (folder, manifest):
        test = input_pipeline(
            folder, manifest, "test", image_size=image_size, batch_size=64, seed=0, training=False
        )
        loss, accuracy = model.evaluate(test, verbose=0)
    return float(loss), float(accuracy)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="prepared dataset (default: prepare --source into cache)")
    parser.add_argument("--source", default=str(DEFAULT_SOURCE))
    parser.add_argument("--limit", type=int, default=0, help="training images per class (smoke)")
    parser.add_argument("--runs", default=",".join(GOALS), help="backbone:mode,... to run")
    parser.add_argument("--epochs", type=int, default=30, help="features / frozen-phase epochs")
    parser.add_argument("--fine-tune-epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--vgg16-weights", type=Path, default=DEFAULT_WEIGHTS["vgg16"])
    parser.add_argument(
        "--mobilenet-v2-weights", type=Path, default=DEFAULT_WEIGHTS["mobilenet_v2"]
    )
    args = parser.parse_args()
    weights = {"vgg16": args.vgg16_weights, "mobilenet_v2": args.mobilenet_v2_weights}

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from catsdogs.components.common import config
    from catsdogs.components.train_transfer import core

    data = prepared_dataset(args)
    rows = []
    for run in [r.strip() for r in args.runs.split(",") if r.strip()]:
        backbone, _, mode = run.partition(":")
        weight_file = weights.get(backbone)
        if weight_file is None or not weight_file.is_file():
            sys.exit(f"Error: no weights file for {backbone!r} ({weight_file}); pass --*-weights.")
        settings = core.TransferSettings(
            backbone=backbone,
            weights=str(weight_file),
            mode=mode,
            epochs=args.epochs,
            fine_tune_epochs=args.fine_tune_epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
        )
        tag = f"e{args.epochs}" + (f"-ft{args.fine_tune_epochs}" if mode == "fine-tune" else "")
        output = str(
            config.cache_dir()
            / "accuracy"
            / f"transfer-{backbone}-{mode}-{Path(data).name}-{tag}-b{args.batch_size}"
            f"-lr{args.learning_rate:g}"
        )
        print(f"== {run}: {output}", flush=True)
        started = time.perf_counter()
        result = core.train_transfer(data, output, settings)
        wall = time.perf_counter() - started
        loss, accuracy = test_accuracy(output, data, settings.image_size)
        goal, book = GOALS.get(run, (None, None))
        row = {
            "run": run,
            "test_accuracy": round(accuracy, 4),
            "test_loss": round(loss, 4),
            "goal": goal,
            "book": book,
            "meets_goal": None if goal is None else round(accuracy, 4) >= goal,
            "epochs_run": result.metrics["epochs_run"],
            "best_val_accuracy": result.metrics.get("best_val_accuracy"),
            "best_val_accuracy_epoch": result.metrics.get("best_val_accuracy_epoch"),
            "train_seconds": result.metrics["train_seconds"],
            "wall_seconds_this_call": round(wall, 1),
            "image_size": list(settings.image_size),
            "output": output,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| run | epochs | best val acc | test acc | goal (book) |")
    print("|---|---|---|---|---|")
    for row in rows:
        goal = "-" if row["goal"] is None else f"{row['goal']:.1%}"
        book = "" if row["book"] is None else f" ({row['book']:.0%})"
        print(
            f"| {row['run']} | {row['epochs_run']} | {row['best_val_accuracy']:.4f} | "
            f"{row['test_accuracy']:.4f} | {goal}{book} |"
        )
    print(json.dumps({"data": data, "runs": rows, **environment_summary()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
