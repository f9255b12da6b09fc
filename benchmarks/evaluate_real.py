"""Evaluation, rendering, prediction and promotion on real photos (the issue's "done when").

Prepares a split of ../shared/data/dogs-vs-cats/train-6000 (or takes --data), trains the scratch
model briefly (or takes --model), then times: ``evaluate`` (evaluation.json + report), ``render``
(grids, chosen channels, Grad-CAM, index.html), ``predict`` over the original-size photos, and two
concurrent promotions into a fresh local champion. Prints one JSON summary; open the report and
the render page under --output.

    .venv/bin/python benchmarks/evaluate_real.py          # full: ~5 min on 2 cores
    .venv/bin/python benchmarks/evaluate_real.py --per-class 20 --epochs 1 --predict-limit 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "dogs-vs-cats"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(SHARED / "train-6000"))
    parser.add_argument("--originals", default=str(SHARED / "original-size"))
    parser.add_argument("--data", help="prepared dataset (default: prepare --source)")
    parser.add_argument("--model", help="model folder (default: train the scratch model briefly)")
    parser.add_argument("--per-class", type=int, default=250, help="train images per class")
    parser.add_argument("--test-per-class", type=int, default=250)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--predict-limit", type=int, default=200, help="original-size photos")
    parser.add_argument("--output", default=str(REPO / "out" / "evaluate-real"))
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from catsdogs.components.evaluate import core
    from catsdogs.components.evaluate.metrics import SCALARS
    from catsdogs.components.predict import core as predict
    from catsdogs.components.promote import champion
    from catsdogs.components.promote import core as gate
    from catsdogs.components.render_activations import core as render

    out = Path(args.output)
    timings: dict[str, float] = {}
    data = args.data
    if not data:
        from catsdogs.components.prepare_dataset import core as prepare

        if not Path(args.source).is_dir():
            sys.exit(f"Error: {args.source} is not a folder of photos; pass --source or --data.")
        data = str(out / "data")
        if not (out / "data" / "manifest.json").exists():
            shutil.rmtree(out / "data", ignore_errors=True)
            settings = prepare.PrepareSettings(
                train_per_class=args.per_class,
                val_per_class=max(1, args.per_class // 2),
                test_per_class=args.test_per_class,
            )
            started = time.perf_counter()
            prepare.prepare(args.source, data, settings, progress=False)
            timings["prepare_s"] = time.perf_counter() - started
    model = args.model
    if not model:
        from catsdogs.components.train_scratch import core as scratch

        model = str(out / "model")
        started = time.perf_counter()
        scratch.train_scratch(data, model, scratch.ScratchSettings(epochs=args.epochs))
        timings["train_s"] = time.perf_counter() - started

    started = time.perf_counter()
    result = core.evaluate(model, data, str(out / "evaluation"))
    timings["evaluate_s"] = time.perf_counter() - started
    timings["evaluate_images_per_s"] = result.metrics["test_count"] / timings["evaluate_s"]

    started = time.perf_counter()
    shutil.rmtree(out / "render", ignore_errors=True)
    rendered = render.render(model, str(out / "render"), data_uri=data)
    timings["render_s"] = time.perf_counter() - started

    photos = sorted(Path(args.originals).glob("*.jpg"))[: args.predict_limit]
    started = time.perf_counter()
    predictions = list(predict.predict(model, [str(p) for p in photos]))
    timings["predict_s"] = time.perf_counter() - started
    correct = sum(
        p.label == Path(p.image).name.split(".")[0] for p in predictions if p.error is None
    )

    location = out / "champion"
    shutil.rmtree(location, ignore_errors=True)
    outcomes: list[object] = []

    def promote_once() -> None:
        try:
            outcomes.append(gate.promote(model, str(out / "evaluation"), data, str(location)))
        except champion.PromotionConflictError as error:
            outcomes.append(error)

    threads = [threading.Thread(target=promote_once) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    record = champion.read_pointer(str(location)).record

    summary = {
        "test_count": result.metrics["test_count"],
        **{k: result.metrics[k] for k in SCALARS},
        "confusion_matrix": result.metrics["confusion_matrix"],
        "report": str(out / "evaluation" / "report.html"),
        "render_page": str(out / "render" / "index.html"),
        "render_files": len(rendered.files),
        "predict_images": len(predictions),
        "predict_errors": sum(p.error is not None for p in predictions),
        "predict_accuracy_original_size": correct / max(1, len(predictions)),
        "promotions": [getattr(o, "reason", str(o)) for o in outcomes],
        "champion_version": record.version if record else None,
        **{k: round(v, 2) for k, v in timings.items()},
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
