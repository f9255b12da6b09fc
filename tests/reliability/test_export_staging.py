"""A local export killed while it copies the SavedModel: the next export removes the copy.

The staging copy sits beside the version folders (so the final rename is atomic); a killed
export used to leave it there for good, a full SavedModel's worth of disk each time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from catsdogs.components.serve import export

# Publish a fake SavedModel and die (kill -9) while the second file is being copied, whichever
# copy function the export uses.
_KILLED_EXPORT = """
import os, shutil, signal, sys
from pathlib import Path
from catsdogs.components.common import storage
from catsdogs.components.serve import export

copied = []
def copy_then_die(real):
    def copy(*args, **kwargs):
        copied.append(args)
        if len(copied) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)
    return copy

shutil.copy2 = copy_then_die(shutil.copy2)
storage.upload_file = copy_then_die(storage.upload_file)
export.publish(Path(sys.argv[1]), sys.argv[2])
"""


def _saved_model(folder: Path) -> Path:
    for name in ("saved_model.pb", "fingerprint.pb", "variables/variables.index", "x/y.bin"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"0" * 4096)
    return folder


def _hidden(serving: Path) -> list[str]:
    return sorted(p.name for p in serving.iterdir() if p.name.startswith("."))


def test_the_next_export_removes_a_killed_exports_staging_copy(tmp_path: Path) -> None:
    saved = _saved_model(tmp_path / "saved")
    serving = tmp_path / "serving"
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_EXPORT, str(saved), str(serving / "1")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr
    assert _hidden(serving), "the killed export should have left its staging copy"
    assert not (serving / "1").exists()
    export.publish(saved, str(serving / "1"))  # the next export (the rerun)
    assert _hidden(serving) == []
    assert sorted(p.name for p in serving.iterdir()) == ["1"]
    assert (serving / "1" / "saved_model.pb").read_bytes() == b"0" * 4096
