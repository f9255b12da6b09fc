"""A run killed while it stages big files in TMPDIR leaves folders that the next run removes.

Each case runs in a child process that is killed (SIGKILL) while its staging folder holds a file:
the folder must be a ``tempdirs`` one (its lock dies with the process), so ``remove_abandoned``,
which every new temporary folder calls first, removes it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from catsdogs.components.common import tempdirs

PREAMBLE = """
import os, signal, sys
from pathlib import Path
from catsdogs.components.common import storage

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

def fill_and_die(uri, local):
    (Path(local) / "shard.tfrecord").write_bytes(b"x" * 100_000)
    die()
"""

CASES = {
    "upload staging (storage.output_dir)": """
with storage.output_dir("gs://bucket/out") as folder:
    (folder / "big.bin").write_bytes(b"x" * 100_000)
    die()
""",
    "download staging (storage.local_dir)": """
storage.download_dir = fill_and_die
with storage.local_dir("gs://bucket/data"):
    pass
""",
    "transfer features cache": """
import numpy as np
from catsdogs.components.train_transfer import features
storage.upload_file = die
splits = {"train": (np.zeros((100, 250), np.float32), np.zeros(100, np.int64))}
features.save_features("gs://bucket/cache", {"k": 1}, splits, 1.0)
""",
    "model staging (checkpoints and model.keras)": """
import keras
from catsdogs.components.common.training import checkpoint
storage.upload_file = die
model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(200)])
checkpoint.save_model(model, "gs://bucket/ckpt", "model-epoch-00001.keras")
""",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_killed_staging_folder_is_removed_by_the_next_run(tmp_path: Path, case: str) -> None:
    temp = tmp_path / "tmpdir"
    temp.mkdir()
    env = dict(os.environ, TMPDIR=str(temp))
    killed = subprocess.run(
        [sys.executable, "-c", PREAMBLE + CASES[case]],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    left = [p for p in temp.iterdir() if p.name.startswith(tempdirs.PREFIX)]
    assert len(left) == 1 and any(p.is_file() for p in left[0].rglob("*")), left
    assert tempdirs.remove_abandoned(temp) == left
    assert not left[0].exists()
