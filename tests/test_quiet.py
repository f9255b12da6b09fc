"""TensorFlow's start-up noise is dropped; every other line (warnings, errors) still shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from catsdogs.components.common.quiet import is_noise
from PIL import Image

# What TensorFlow 2.21 prints at start-up on a CPU machine (measured; see quiet.py).
STARTUP_NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796163104.783289    1092 port.cc:153] oneDNN custom operations are on. You may "
    "see slightly different numerical results due to floating-point round-off errors.",
    "I0000 00:00:1796163104.783747    1092 cudart_stub.cc:31] Could not find cuda drivers on your "
    "machine, GPU will not be used.",
    "I0000 00:00:1796163104.839055    1092 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    "TensorFlow with the appropriate compiler flags.",
]
CUINIT = (
    "E0000 00:00:1796163125.545164    1426 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)"
)
BANNED = ("cuInit", "absl", "cpu_feature_guard", "cudart_stub", "oneDNN custom operations")


def _env() -> dict[str, str]:
    """This environment without the tests' TF_CPP_MIN_LOG_LEVEL: the defaults are under test."""
    return {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}


def test_is_noise_drops_the_known_startup_lines_and_nothing_else() -> None:
    for line in STARTUP_NOISE:
        assert is_noise(line + "\n", gpu_present=False), line
        assert is_noise(line, gpu_present=True), line
    assert is_noise(CUINIT, gpu_present=False)
    assert not is_noise(CUINIT, gpu_present=True)  # with a GPU, a failed cuInit is a real error
    for kept in (
        "W0000 00:00:1796163125.5 1426 loader.cc:9] Out of memory while allocating 2.0GiB.",
        "E0000 00:00:1796163125.5 1426 cuda_platform.cc:52] something else went wrong",
        "UserWarning: Your input ran out of data; interrupting training.",
        "Epoch 1/8  accuracy 0.55 (24 s)",
        "",
    ):
        assert not is_noise(kept, gpu_present=False), kept


def test_filtered_stderr_writes_back_every_line_that_is_not_noise() -> None:
    code = f"""
import os, warnings
from catsdogs.components.common import quiet
with quiet.filtered_stderr():
    for line in {STARTUP_NOISE + [CUINIT]!r}:
        os.write(2, (line + "\\n").encode())
    os.write(2, b"W0000 00:00:1.5 7 loader.cc:9] a C++ warning a user can act on\\n")
    warnings.warn("a Python warning a user can act on")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True
    )
    assert "a C++ warning a user can act on" in done.stderr
    assert "UserWarning: a Python warning a user can act on" in done.stderr
    if not Path("/dev/nvidia0").exists():
        assert not any(word in done.stderr for word in BANNED), done.stderr


def test_a_catsdogs_command_that_loads_tensorflow_starts_quietly(tmp_path: Path) -> None:
    """``catsdogs predict`` imports TensorFlow; its real output and its errors still show."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    build = (
        "import keras; m = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), "
        "keras.layers.Dense(1, activation='sigmoid')]); "
        f"m.save({str(model_dir / 'model.keras')!r})"
    )
    subprocess.run([sys.executable, "-c", build], capture_output=True, env=_env(), check=True)
    good = tmp_path / "cat.1.jpg"
    Image.fromarray(np.full((32, 32, 3), 90, dtype="uint8")).save(good)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    done = subprocess.run(
        [sys.executable, "-m", "catsdogs.cli", "predict", "--model", str(model_dir)]
        + [str(good), str(bad)],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert str(good) in done.stdout, done.stdout + done.stderr
    assert "broken.jpg" in done.stderr  # the error a user can act on is still there
    if not Path("/dev/nvidia0").exists():
        assert not any(word in done.stdout + done.stderr for word in BANNED), done.stderr
