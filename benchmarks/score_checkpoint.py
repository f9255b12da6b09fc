"""Score the newest checkpoint of an accuracy row that has not finished (a partial budget).

The accuracy runs checkpoint every epoch under ``<cache>/models/<row>/.checkpoint/<phase>/``. When
the machine's time runs out before a row's last epoch, this scores the newest checkpoint on both
test sets (the book's 1,000 test photos and the 2,000 "new data" photos), with Wilson 95%
intervals, and says how many epochs of how many it had, so a partial figure is never mistaken for
the full recipe's. The run itself stays resumable (rerun its command).

    .venv/bin/python benchmarks/score_checkpoint.py --cache ~/.cache/catsdogs/accuracy-cpu --row scratch-seed
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from accuracy_data import book_dataset, new_data_dataset
from accuracy_scratch import score

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared/data/dogs-vs-cats/train-6000"


def newest_checkpoint(row_dir: Path) -> tuple[Path, dict]:
    """The newest ``model-epoch-*.keras`` of the row's last phase, and that phase's state."""
    phases = sorted(p for p in (row_dir / ".checkpoint").glob("*") if p.is_dir())
    phases = phases or ([row_dir / ".checkpoint"] if (row_dir / ".checkpoint").is_dir() else [])
    for phase in reversed(phases):
        models = sorted(phase.glob("model-epoch-*.keras"))
        if models:
            state = phase / "state.json"
            return models[-1], json.loads(state.read_text()) if state.is_file() else {}
    raise SystemExit(f"Error: no checkpoint under {row_dir}/.checkpoint; has the row started?")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, required=True, help="the accuracy run's --cache")
    parser.add_argument("--row", required=True, help="row name, e.g. scratch-seed")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from catsdogs.components.common.training.augmentation import random_affine_class

    checkpoint, state = newest_checkpoint(args.cache / "models" / args.row)
    random_affine_class()  # registered before loading a model that uses it
    model = keras.models.load_model(checkpoint)
    size = tuple(model.input_shape[1:3])
    data = book_dataset(args.source, args.cache)
    new = new_data_dataset(args.source, args.cache)
    test, new_data = score(model, data, size), score(model, new, size)
    history = state.get("history", {})
    val = history.get("val_accuracy", [])
    summary = {
        "row": args.row,
        "checkpoint": str(checkpoint),
        "epochs_done": state.get("epoch"),
        "best_val_accuracy": max(val) if val else None,
        "val_accuracy_per_epoch": val,
        "test": test,
        "new_data": new_data,
    }
    print(json.dumps(summary, indent=1))
    print(
        f"| {args.row} (partial: {state.get('epoch')} epochs) | "
        f"{summary['best_val_accuracy'] or 0:.1%} | {test['accuracy']:.1%} "
        f"({test['low']:.1%}-{test['high']:.1%}) | {new_data['accuracy']:.1%} "
        f"({new_data['low']:.1%}-{new_data['high']:.1%}) |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
