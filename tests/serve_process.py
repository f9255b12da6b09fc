"""Start a model server process from an argv (``catsdogs serve ...``) and wait until it is ready."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def running(
    argv: list[str], port: int, log_path: Path, env: dict[str, str] | None = None
) -> Iterator[dict]:
    """Run ``argv`` (its stdout and stderr into ``log_path``) until ready on 127.0.0.1:``port``.

    Yields ``{"url", "log", "process"}``; the process is terminated afterwards.
    """
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 240
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not start: {log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield {"url": url, "log": log_path, "process": process}
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
