"""Same inputs and seed, same bytes: two prepares of one folder write identical shards and manifests.

The two runs are separate processes with different hash seeds and worker counts, so neither dict
or set order, protobuf map order nor the order workers finish in can change a byte.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from catsdogs.components.common import records
from PIL import Image

PREPARE = """
import sys
from catsdogs.components.prepare_dataset import core
cfg = core.PrepareSettings(val_fraction=0.25, test_fraction=0.25, max_side=64, workers=int(sys.argv[3]))
core.prepare(sys.argv[1], sys.argv[2], cfg, progress=False)
"""


def _source(folder: Path) -> Path:
    folder.mkdir()
    for i in range(8):
        for cls, shade in (("cat", 30), ("dog", 220)):
            buffer = io.BytesIO()
            Image.new("RGB", (80 + i, 60), (shade, i * 30, 90)).save(buffer, "JPEG")
            (folder / f"{cls}.{i}.jpg").write_bytes(buffer.getvalue())
    (folder / "cat.broken.jpg").write_bytes(b"not an image")
    Image.new("RGB", (300, 200), (1, 2, 3)).save(folder / "dog.large.png")
    return folder


def _prepare(source: Path, output: Path, hash_seed: str, workers: int) -> dict[str, bytes]:
    subprocess.run(
        [sys.executable, "-c", PREPARE, str(source), str(output), str(workers)],
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        check=True,
        capture_output=True,
        timeout=300,
    )
    names = [
        records.MANIFEST,
        *(
            s.file
            for m in [records.load_manifest(output)]
            for split in m.splits.values()
            for s in split.shards
        ),
    ]
    return {name: (output / name).read_bytes() for name in names}


def test_two_prepares_of_one_folder_write_identical_shards_and_manifests(tmp_path: Path) -> None:
    source = _source(tmp_path / "src")
    first = _prepare(source, tmp_path / "a", "1", workers=1)
    second = _prepare(source, tmp_path / "b", "2", workers=2)
    assert len(first) == 4 and list(first) == list(second)
    for name in first:
        assert first[name] == second[name], name
    assert records.load_manifest(tmp_path / "a").quarantined[0].file == "cat.broken.jpg"
