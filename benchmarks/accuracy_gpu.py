"""The whole accuracy table in one run: every model of docs/benchmarks.md, scored on two test sets.

Rows (each trained once into the cache, resumable; a finished row is not trained again):
scratch ``seed`` (the book's recipe: seed augmentation, 100 steps of 32 per epoch, 100 epochs),
scratch ``xception-mini`` (the book's 2nd edition: 180 px, RMSprop 1e-3, 100 epochs), VGG16
``features``, ``frozen`` and ``fine-tune`` (started from the finished ``frozen`` row), MobileNetV2
``features`` and ``fine-tune`` (started from the finished ``features`` row). Every model is scored
on the 1,000 test photos of the book's split and on the 2,000 "new data" photos (ids 2000-2999),
with the Wilson 95% interval; rows are chosen by validation accuracy only.

Rows run as parallel processes (``--parallel``; one H200 holds them all), dependent rows after
the row they start from. ``SMOKE=1`` (or ``--smoke``) runs every row for one short epoch on 20/10/10
photos per class, on the CPU in a few minutes.

    .venv/bin/python benchmarks/accuracy_gpu.py            # the table, about 10 min on one H200
    SMOKE=1 .venv/bin/python benchmarks/accuracy_gpu.py    # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from accuracy_data import BOOK_IDS, NEW_DATA_IDS, book_dataset, linked_source, new_data_dataset

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO.parent / "shared/data/dogs-vs-cats/train-6000"
WEIGHTS = REPO.parent / "shared/weights"
WEIGHT_FILES = {
    "vgg16": WEIGHTS / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "mobilenet_v2": WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
}
# name -> (trainer, settings, row it starts from, published anchor, goal)
ROWS: dict[str, tuple[str, dict, str, str, float]] = {
    "scratch-seed": ("scratch", {"epochs": 100, "steps_per_epoch": 100}, "", "83.9%", 0.84),
    "scratch-xception-mini": (
        "scratch",
        {
            "architecture": "xception-mini",
            "epochs": 100,
            "image_size": (180, 180),
            "learning_rate": 1e-3,
        },
        "",
        "90.8%",
        0.91,
    ),
    "vgg16-features": ("transfer", {"backbone": "vgg16", "mode": "features"}, "", "90%", 0.965),
    "vgg16-frozen": ("transfer", {"backbone": "vgg16", "mode": "frozen"}, "", "96%", 0.965),
    "vgg16-fine-tune": (
        "transfer",
        {"backbone": "vgg16", "mode": "fine-tune", "fine_tune_epochs": 30},
        "vgg16-frozen",
        "96.8-97%",
        0.975,
    ),
    "mobilenet_v2-features": (
        "transfer",
        {"backbone": "mobilenet_v2", "mode": "features"},
        "",
        "-",
        0.985,
    ),
    "mobilenet_v2-fine-tune": (
        "transfer",
        {"backbone": "mobilenet_v2", "mode": "fine-tune", "fine_tune_epochs": 10},
        "mobilenet_v2-features",
        "98.6%",
        0.992,
    ),
}
SMOKE_SETTINGS = {"epochs": 1, "steps_per_epoch": 2, "fine_tune_epochs": 1}


def smoke_datasets(cache: Path) -> tuple[str, str]:
    """20/10/10 photos per class of the book's ids, and 20 per class of the new data."""
    from catsdogs.components.prepare_dataset import core
    from catsdogs.components.prepare_dataset.settings import PrepareSettings

    book = cache / "smoke-book"
    if not (book / "manifest.json").is_file():
        linked = linked_source(SOURCE, range(BOOK_IDS.start, 40), cache / "smoke-book-src")
        config = PrepareSettings(train_per_class=20, val_per_class=10, test_per_class=10)
        core.prepare(str(linked), str(book), config, progress=False)
    new = new_data_dataset(SOURCE, cache / "smoke", ids=range(NEW_DATA_IDS.start, 2020))
    return str(book), new


def train_row(name: str, data: str, cache: Path, smoke: bool) -> dict:
    """Train one row in this process and score it; returns the row."""
    trainer, settings, start, _, _ = ROWS[name]
    settings = dict(settings)
    if smoke:
        settings.update(
            {
                k: v
                for k, v in SMOKE_SETTINGS.items()
                if trainer == "transfer" or k != "fine_tune_epochs"
            }
        )
    output = cache / "models" / name
    if trainer == "scratch":
        from catsdogs.components.train_scratch import core

        if "image_size" in settings:
            settings["image_size"] = tuple(settings["image_size"])
        result = core.train_scratch(data, str(output), core.ScratchSettings(**settings))
    else:
        from catsdogs.components.train_transfer import core

        settings["weights"] = str(WEIGHT_FILES[settings["backbone"]])
        if start:
            settings["start_from"] = str(cache / "models" / start)
        result = core.train_transfer(data, str(output), core.TransferSettings(**settings))
    return {"row": name, "output": str(output), "metrics": result.metrics}


def score(model: str, data: str, output: Path) -> dict:
    """``evaluate`` on the test split of ``data``: accuracy and its Wilson 95% interval."""
    from catsdogs.components.evaluate import core

    metrics = core.evaluate(model, data, str(output)).metrics
    return {k: round(metrics[k], 4) for k in ("accuracy", "accuracy_ci_low", "accuracy_ci_high")}


def run_in_subprocess(name: str, args: argparse.Namespace, cache: Path) -> dict:
    """One row in a process of its own (its own GPU memory and TF state); returns its row."""
    command = [sys.executable, __file__, "--row", name, "--cache", str(cache)]
    if args.smoke:
        command.append("--smoke")
    log = cache / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as handle:
        code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT).returncode
    lines = [line for line in log.read_text().splitlines() if line.startswith("ROW ")]
    if code or not lines:
        return {"row": name, "error": f"exit {code}; see {log}"}
    return json.loads(lines[-1][4:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", default=os.environ.get("SMOKE") == "1")
    parser.add_argument("--cache", type=Path, help="default: <CATSDOGS_CACHE>/accuracy-gpu[-smoke]")
    parser.add_argument("--parallel", type=int, default=0, help="rows at once (4; smoke: 1)")
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated row names")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: train one row here
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from catsdogs.components.common import config

    cache = args.cache or config.cache_dir() / (
        "accuracy-gpu-smoke" if args.smoke else "accuracy-gpu"
    )
    data, new = (
        smoke_datasets(cache)
        if args.smoke
        else (book_dataset(SOURCE, cache), new_data_dataset(SOURCE, cache))
    )
    if args.row:
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)  # rows share the GPU
        row = train_row(args.row, data, cache, args.smoke)
        row["test"] = score(row["output"], data, cache / "evaluations" / args.row / "test")
        row["new_data"] = score(row["output"], new, cache / "evaluations" / args.row / "new")
        print("ROW " + json.dumps(row), flush=True)
        return 0
    names = [n.strip() for n in args.rows.split(",") if n.strip()]
    started = time.perf_counter()
    first = [n for n in names if not ROWS[n][2]]
    later = [n for n in names if ROWS[n][2]]
    with ThreadPoolExecutor(args.parallel or (1 if args.smoke else 4)) as pool:
        results = dict(
            zip(first, pool.map(lambda n: run_in_subprocess(n, args, cache), first), strict=True)
        )
        results.update(
            zip(later, pool.map(lambda n: run_in_subprocess(n, args, cache), later), strict=True)
        )
    wall = time.perf_counter() - started
    print(
        "\n| model | epochs | best val acc | test acc (95% CI), 1,000 photos | new data acc (95% CI), 2,000 photos | book | goal |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in names:
        row, (_, _, _, book, goal) = results[name], ROWS[name]
        if "error" in row:
            print(f"| {name} | failed: {row['error']} | | | | {book} | {goal:.1%} |")
            continue
        m, t, n = row["metrics"], row["test"], row["new_data"]
        print(
            f"| {name} | {m['epochs_run']} | {m.get('best_val_accuracy', 0):.4f} | "
            f"{t['accuracy']:.1%} ({t['accuracy_ci_low']:.1%}-{t['accuracy_ci_high']:.1%}) | "
            f"{n['accuracy']:.1%} ({n['accuracy_ci_low']:.1%}-{n['accuracy_ci_high']:.1%}) | "
            f"{book} | {goal:.1%} |"
        )
    from common import environment_summary

    print(
        json.dumps(
            {
                "wall_seconds": round(wall, 1),
                "smoke": args.smoke,
                "rows": results,
                **environment_summary(),
            },
            indent=1,
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
