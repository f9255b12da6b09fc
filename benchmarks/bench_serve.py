"""`catsdogs serve` under load on 127.0.0.1 against `catsdogs predict` on the same real photos.

1. Export the model (default: the seed's convnet at 150x150, untrained: speed does not depend on
   the weights) and time the export with its check against predict.
2. Start the KServe server (`catsdogs serve`) in a subprocess, send V1 requests
   (``{"instances": [{"b64": ...}]}``, --batch images each) from --concurrency keep-alive
   connections for --seconds, and report requests/s, images/s and p50/p99 latency.
3. Run `catsdogs predict`'s core on the same photos and report images/s and p50/p99 per image.

    .venv/bin/python benchmarks/bench_serve.py --seconds 20          # make bench-serve
    .venv/bin/python benchmarks/bench_serve.py --seconds 5 --images 16   # smoke
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from common import environment_summary

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared/data/dogs-vs-cats/train-6000"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_model(folder: Path) -> str:
    from catsdogs.components.train_scratch.core import build_model

    folder.mkdir(parents=True, exist_ok=True)
    build_model().save(folder / "model.keras")
    return str(folder)


def start_server(serving: str, port: int, log: Path) -> subprocess.Popen:
    argv = ["catsdogs", "serve", "--model", serving, "--port", str(port)]
    code = f"import sys; sys.argv = {argv!r}; from catsdogs.cli.serve import app; app(sys.argv[1:])"
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2):
                return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"the server did not start; see {log}")


def load(port: int, bodies: list[bytes], seconds: float, concurrency: int) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def worker(offset: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        index = offset
        while time.monotonic() < stop:
            body = bodies[index % len(bodies)]
            index += concurrency
            start = time.perf_counter()
            connection.request(
                "POST",
                "/v1/models/catsdogs:predict",
                body,
                {"Content-Type": "application/json"},
            )
            response = connection.getresponse()
            payload = response.read()
            elapsed = time.perf_counter() - start
            with lock:
                if response.status == 200:
                    latencies.append(elapsed)
                else:
                    errors.append(payload.decode()[:200])
        connection.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    return {
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "requests_per_s": round(len(latencies) / wall, 2),
        "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1) if latencies else None,
        "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1) if latencies else None,
    }


def predict_baseline(model: str, files: list[Path]) -> dict:
    from catsdogs.components.predict import core as predictor

    start = time.perf_counter()
    times, last = [], None
    for item in predictor.predict(model, [str(f) for f in files]):
        now = time.perf_counter()
        if last is not None:  # the first item also pays the model load
            times.append(now - last)
        last = now
        assert item.error is None, item.error
    total = time.perf_counter() - start
    return {
        "images": len(files),
        "wall_s_with_model_load": round(total, 2),
        "images_per_s_after_load": round(len(times) / sum(times), 2),
        "p50_ms": round(1000 * float(np.percentile(times, 50)), 1),
        "p99_ms": round(1000 * float(np.percentile(times, 99)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="Folder of photos.")
    parser.add_argument("--model", default="", help="Model folder; default: the seed's convnet.")
    parser.add_argument("--images", type=int, default=64, help="Photos to cycle through.")
    parser.add_argument("--seconds", type=float, default=20.0, help="Load duration (bounded).")
    parser.add_argument("--concurrency", type=int, default=4, help="Parallel connections.")
    parser.add_argument("--batch", type=int, default=1, help="Images per request.")
    args = parser.parse_args()
    files = sorted(args.source.glob("*.jpg"))[: args.images]
    if not files:
        sys.exit(f"No .jpg photos under {args.source}; pass --source.")
    from catsdogs.components.serve import export

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        model = args.model or default_model(Path(tmp, "model"))
        start = time.perf_counter()
        exported = export.export(model, str(Path(tmp, "serving")))
        export_s = time.perf_counter() - start
        encoded = [base64.b64encode(f.read_bytes()).decode() for f in files]
        bodies = [
            json.dumps({"instances": [{"b64": b} for b in encoded[i : i + args.batch]]}).encode()
            for i in range(0, len(encoded), args.batch)
        ]
        port = free_port()
        server = start_server(str(Path(tmp, "serving")), port, Path(tmp, "server.log"))
        try:
            load(port, bodies[:2], 2.0, 1)  # warm-up: graph tracing
            served = load(port, bodies, args.seconds, args.concurrency)
        finally:
            server.terminate()
            server.wait(timeout=30)
        served["images_per_s"] = round(served["requests_per_s"] * args.batch, 2)
        baseline = predict_baseline(model, files)
    report = {
        "environment": environment_summary(),
        "photos": len(files),
        "export": {"seconds": round(export_s, 1), "max_difference": exported.max_difference},
        "serve": {"batch": args.batch, "concurrency": args.concurrency, **served},
        "predict": baseline,
        "serve_vs_predict_images_per_s": round(
            served["images_per_s"] / baseline["images_per_s_after_load"], 2
        ),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
