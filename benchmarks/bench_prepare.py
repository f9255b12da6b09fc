"""Validation throughput of prepare_dataset against a single-core Pillow full-decode baseline.

Baseline: one process, ``Image.open`` + ``load()`` + ``convert("RGB")`` on every file.
Ours: ``validation.validate_all`` (header check, JPEG draft, full load, EXIF, RGB, downscale, JPEG
re-encode where needed: baseline RGB JPEGs within ``max_side`` keep their bytes) on one worker and
on all cores; the 1-worker figure separates the per-image cost (ours also downscales and
re-encodes, the baseline does not) from the parallel scaling. Goal: ours >= 0.8 x cores x
baseline. The file list is repeated until there are at least --min-images images, so that timings
are stable; baseline and candidates run in alternating rounds and the medians are reported, so a
job that starts or stops on the machine meanwhile weighs on both alike.

    .venv/bin/python benchmarks/bench_prepare.py [--source DIR] [--min-images N] [--workers N]
        [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from catsdogs.components.common.images import IMAGE_SUFFIXES
from catsdogs.components.prepare_dataset import validation
from catsdogs.components.prepare_dataset.settings import PrepareConfig
from PIL import Image

DEFAULT_SOURCE = (
    Path(__file__).resolve().parents[1].parent / "shared/data/dogs-vs-cats/original-size"
)


def baseline(paths: list[str]) -> float:
    """Images per second of a single-core full decode."""
    started = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            image.load()
            image.convert("RGB")
    return len(paths) / (time.perf_counter() - started)


def ours(
    paths: list[str], workers: int, max_side: int, encode: bool = True
) -> tuple[float, list[validation.Outcome]]:
    """Images per second of our validation on ``workers`` processes, and the outcomes."""
    with tempfile.TemporaryDirectory() as spool:
        validation.validate_all(
            paths[:8], Path(spool), max_side, 95, workers, False, encode
        )  # warm-up
        started = time.perf_counter()
        outcomes = validation.validate_all(paths, Path(spool), max_side, 95, workers, False, encode)
        seconds = time.perf_counter() - started
    return len(paths) / seconds, outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--min-images", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=0, help="0: all cores")
    parser.add_argument("--max-side", type=int, default=PrepareConfig.max_side)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians)")
    args = parser.parse_args()
    if not args.source.is_dir():
        print(
            f"Error: {args.source} is not a folder; pass --source DIR of photos.", file=sys.stderr
        )
        return 2
    files = sorted(str(p) for p in args.source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        print(f"Error: no images under {args.source}.", file=sys.stderr)
        return 2
    paths = files * max(1, -(-args.min_images // len(files)))
    cores = validation.worker_count(args.workers)
    labels = (
        "baseline: 1 core, Pillow open + load + convert RGB",
        f"validation (checks + draft decode + EXIF + RGB), {cores} workers",
        "validation + downscale + JPEG re-encode, 1 worker",
        f"validation + downscale + JPEG re-encode, {cores} workers",
    )
    runs: list[list[float]] = [[] for _ in labels]
    outcomes: list[validation.Outcome] = []
    for _ in range(max(1, args.rounds)):
        runs[0].append(baseline(paths))
        runs[1].append(ours(paths, args.workers, args.max_side, encode=False)[0])
        runs[2].append(ours(paths, 1, args.max_side)[0])
        rate, outcomes = ours(paths, args.workers, args.max_side)
        runs[3].append(rate)
    base, checks, single, full = (statistics.median(r) for r in runs)
    valid = [o for o in outcomes if o.ok]
    kept = sum(o.kept for o in valid)
    print(
        f"files: {len(files)} distinct, {len(paths)} decoded per run, {len(valid)} valid, "
        f"{kept} kept as they were ({len(valid) - kept} re-encoded, max_side {args.max_side}); "
        f"{args.rounds} alternating rounds, medians; load average {os.getloadavg()[0]:.1f}"
    )
    for label, rate, rates in zip(labels, (base, checks, single, full), runs, strict=True):
        spread = "/".join(f"{r:.0f}" for r in rates)
        print(f"{label:66} {rate:8.1f} images/s  ({rate / base:.2f} x baseline; runs {spread})")
    print(f"parallel efficiency of the full path: {full / (single * cores):.2f}")
    goal = 0.8 * cores
    for label, rate in ((labels[1], checks), (labels[3], full)):
        verdict = "meets" if rate / base >= goal else "misses"
        print(
            f"goal 0.8 x {cores} cores = {goal:.2f} x baseline: {label.split(',')[0]} {verdict} it"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
