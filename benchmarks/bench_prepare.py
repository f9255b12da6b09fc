"""Validation throughput of prepare_dataset, by JPEG path, against a 1-core Pillow decode baseline.

Baseline: one process, ``Image.open`` + ``load()`` + ``convert("RGB")`` on every file.
Paths (``validation.validate_all`` with a ``codec``; header check, JPEG draft, full decode, EXIF,
RGB, downscale, JPEG re-encode where needed, kept files stripped of their metadata):

- ``pillow``: Pillow's ``load()`` and ``save()`` (before issue 27; no corrupt-data check);
- ``simplejpeg``: simplejpeg's strict decode and its encode (TurboJPEG's fast DCT below q96);
- ``simplejpeg+pil``: simplejpeg's strict decode, Pillow's encode (the adopted default);
- ``pyturbojpeg``: PyTurboJPEG's strict decode and accurate-DCT encode (needs the system's
  libturbojpeg: ``apt-get install libturbojpeg0``; reported as unavailable otherwise).

Each path is timed for the checks and decode alone on all cores, and for the full path on one
worker and on all cores; the 1-worker figure separates the per-image cost from the parallel
scaling. Goal: full path >= 0.8 x cores x baseline. The file list is repeated until there are at
least --min-images images; every row runs once per round, rounds rotate the order, and medians are
reported, so a job that starts or stops on the machine meanwhile weighs on all rows alike. The
stored images of each path are compared with the ``pillow`` path's (decoded, per channel), and the
adopted path is profiled (cProfile, one worker) to show what bounds it.

    .venv/bin/python benchmarks/bench_prepare.py [--source DIR] [--min-images N] [--workers N]
        [--rounds N]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from catsdogs.components.common.images import IMAGE_SUFFIXES
from catsdogs.components.prepare_dataset import jpeg, validation
from catsdogs.components.prepare_dataset.settings import PrepareSettings
from jpeg_codecs import TurboJpeg, turbojpeg_problem
from PIL import Image

DEFAULT_SOURCE = (
    Path(__file__).resolve().parents[1].parent / "shared/data/dogs-vs-cats/original-size"
)
ADOPTED = "simplejpeg+pil"
PATHS: dict[str, jpeg.JpegCodec | None] = {
    "pillow": None,
    "simplejpeg": jpeg.SimpleJpeg(encoder="simplejpeg"),
    ADOPTED: jpeg.SimpleJpeg(encoder="pillow"),
    "pyturbojpeg": TurboJpeg(),
}
assert PATHS[ADOPTED] == validation.DEFAULT_CODEC, "the adopted path is prepare's default"


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the pool's workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def baseline(paths: list[str]) -> tuple[float, float]:
    """Images per second of a single-core full decode, and CPU milliseconds per image."""
    started, cpu = time.perf_counter(), _cpu_seconds()
    for path in paths:
        with Image.open(path) as image:
            image.load()
            image.convert("RGB")
    return _rates(len(paths), started, cpu)


def ours(
    paths: list[str], workers: int, max_side: int, codec: jpeg.JpegCodec | None, encode: bool
) -> tuple[float, float]:
    """Images/s of our validation on ``workers`` processes through ``codec``, and CPU ms/image."""
    with tempfile.TemporaryDirectory() as spool:
        run = validation.validate_all
        run(paths[:8], Path(spool), max_side, 95, workers, False, encode, codec)  # warm-up
        started, cpu = time.perf_counter(), _cpu_seconds()
        run(paths, Path(spool), max_side, 95, workers, False, encode, codec)
        return _rates(len(paths), started, cpu)


def _rates(count: int, started: float, cpu: float) -> tuple[float, float]:
    return count / (time.perf_counter() - started), (_cpu_seconds() - cpu) * 1000 / count


def pixel_differences(files: list[str], max_side: int, codec: jpeg.JpegCodec | None) -> str:
    """How the stored images of ``codec`` differ from the ``pillow`` path's, decoded."""
    same, diffs, outcomes = 0, [], 0
    for path in files:
        reference, ref_bytes = validation.validate_image(path, max_side, 95, codec=None)
        outcome, data = validation.validate_image(path, max_side, 95, codec=codec)
        if outcome.ok != reference.ok or outcome.encoded != reference.encoded:
            outcomes += 1
            continue
        if not outcome.ok:
            continue
        same += data == ref_bytes
        ours_px = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)
        ref_px = np.asarray(Image.open(io.BytesIO(ref_bytes)).convert("RGB"), dtype=np.int16)
        diffs.append(np.abs(ours_px - ref_px).reshape(-1, 3))
    diff = np.concatenate(diffs) if diffs else np.zeros((1, 3), np.int16)
    top = "/".join(str(v) for v in diff.max(axis=0))
    mean = "/".join(f"{v:.3f}" for v in diff.mean(axis=0))
    other = f"; {outcomes} other outcomes or sizes" if outcomes else ""
    return f"byte-identical {same}/{len(files)}, |diff| R/G/B max {top}, mean {mean}{other}"


def profile(paths: list[str], max_side: int, codec: jpeg.JpegCodec | None, top: int = 14) -> str:
    """The functions the adopted path spends its time in, one worker (cProfile, by own time)."""
    with tempfile.TemporaryDirectory() as spool:
        profiler = cProfile.Profile()
        profiler.enable()
        validation.validate_all(paths, Path(spool), max_side, 95, 1, False, True, codec)
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    total = next(line for line in lines if "function calls" in line).strip()
    return "\n".join([total, *lines[start:]])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--min-images", type=int, default=4000)
    parser.add_argument("--workers", type=int, default=0, help="0: all cores")
    parser.add_argument("--max-side", type=int, default=PrepareSettings.max_side)
    parser.add_argument("--rounds", type=int, default=3, help="rotating rounds (medians)")
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
    codecs = dict(PATHS)
    missing = turbojpeg_problem()
    if missing:
        del codecs["pyturbojpeg"]
    rows: dict[Row, Callable[[], tuple[float, float]]] = {("baseline", ""): lambda: baseline(paths)}
    for name, codec in codecs.items():
        for kind, workers, encode in (("checks", args.workers, False), ("full 1w", 1, True)):
            rows[(name, kind)] = _timer(paths, workers, args.max_side, codec, encode)
        rows[(name, "full")] = _timer(paths, args.workers, args.max_side, codec, True)
    runs: dict[Row, list[tuple[float, float]]] = {key: [] for key in rows}
    load_before = os.getloadavg()[0]
    keys = list(rows)
    for round_ in range(max(1, args.rounds)):
        shift = round_ % len(keys)
        for key in keys[shift:] + keys[:shift]:
            runs[key].append(rows[key]())
    rate = {key: statistics.median(r for r, _ in values) for key, values in runs.items()}
    cpu = {key: statistics.median(c for _, c in values) for key, values in runs.items()}
    base, base_cpu = rate[("baseline", "")], cpu[("baseline", "")]
    print(
        f"files: {len(files)} distinct, {len(paths)} decoded per run, max_side {args.max_side}, "
        f"{cores} workers; {args.rounds} rotating rounds, medians; load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores"
    )
    print(
        f"baseline: 1 core, Pillow open + load + convert RGB: {base:.1f} images/s, "
        f"{base_cpu:.3f} CPU ms/image"
    )
    columns = (f"checks, {cores}w", "full, 1w", f"full, {cores}w")
    print("images/s (x baseline); * = adopted, prepare's default")
    print(f"{'path':16}" + "".join(f"{c:>18}" for c in columns) + "  full vs pillow  efficiency")
    for name in codecs:
        cells = "".join(f"{rate[(name, k)]:9.0f} ({rate[(name, k)] / base:.2f}x)" for k in _KINDS)
        versus = rate[(name, "full")] / rate[("pillow", "full")]
        efficiency = rate[(name, "full")] / (rate[(name, "full 1w")] * cores)
        print(f"{_label(name):16}{cells}  {versus:13.2f}x  {efficiency:10.2f}")
    if missing:
        print(f"pyturbojpeg      not measured: {missing}")
    print("CPU ms per image, all processes (less sensitive to other jobs than images/s)")
    print(f"{'path':16}" + "".join(f"{c:>18}" for c in columns) + "  full 1w vs pillow")
    for name in codecs:
        cells = "".join(f"{cpu[(name, k)]:18.3f}" for k in _KINDS)
        versus = cpu[(name, "full 1w")] / cpu[("pillow", "full 1w")]
        print(f"{_label(name):16}{cells}  {versus:16.2f}x")
    print(
        "runs (images/s): "
        + ", ".join(
            f"{k[0]} {k[1]}".strip() + " " + "/".join(f"{r:.0f}" for r, _ in runs[k]) for k in keys
        )
    )
    print("stored images vs the pillow path's, decoded, on the distinct files:")
    for name, codec in codecs.items():
        if name != "pillow":
            print(f"  {name:16} {pixel_differences(files, args.max_side, codec)}")
    goal = 0.8 * cores
    for name in codecs:
        verdict = "meets" if rate[(name, "full")] / base >= goal else "misses"
        print(f"goal 0.8 x {cores} cores = {goal:.2f}x baseline: {name} full path {verdict} it")
    print(f"profile of the adopted path ({ADOPTED}), 1 worker, {len(paths[:1000])} images:")
    print(profile(paths[:1000], args.max_side, PATHS[ADOPTED]))
    return 0


_KINDS = ("checks", "full 1w", "full")
Row = tuple[str, str]  # (path, kind)


def _label(name: str) -> str:
    return name + (" *" if name == ADOPTED else "")


def _timer(
    paths: list[str], workers: int, max_side: int, codec: Any, encode: bool
) -> Callable[[], tuple[float, float]]:
    return lambda: ours(paths, workers, max_side, codec, encode)


if __name__ == "__main__":
    sys.exit(main())
