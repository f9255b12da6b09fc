"""Helpers shared by the benchmark and accuracy scripts (benchmark-only code lives here)."""

from __future__ import annotations

import os
import platform
from typing import Any


def environment_summary() -> dict[str, Any]:
    """CPU count and GPU names, for benchmark and accuracy notes."""
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {"cpus": os.cpu_count(), "gpus": gpus, "machine": platform.machine()}
