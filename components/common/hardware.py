"""What hardware this machine has, without importing TensorFlow (``/dev`` device nodes only)."""

from __future__ import annotations

import glob


def has_nvidia_device() -> bool:
    """Whether an NVIDIA device node (``/dev/nvidia0``...) exists on this machine."""
    return bool(glob.glob("/dev/nvidia[0-9]*"))
