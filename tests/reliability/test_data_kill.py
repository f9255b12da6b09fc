"""A prepare killed with SIGKILL (or stopped by a full disk) never blocks its rerun.

Each kill runs prepare in a child process that sends itself SIGKILL at one point: while
validating, in the middle of a shard write, before ``manifest.json``, and (gs://) in the middle of
the upload. The rerun, with nothing cleaned up by hand, succeeds and writes the very dataset a
clean run writes, and no temporary file or folder is left in the output or in ``TMPDIR``.
"""

from __future__ import annotations

import errno
import io
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from catsdogs.components.common import errors, records, storage, tempdirs, tfrecord
from catsdogs.components.prepare_dataset import core, validation
from PIL import Image

SMALL = core.PrepareSettings(train_per_class=3, val_per_class=1, test_per_class=1, workers=1)

KILLER = """
import os, signal, sys
from catsdogs.components.common import records, storage, tfrecord
from catsdogs.components.prepare_dataset import core, validation

point, source, output = sys.argv[1:]
calls = []

def die_on(module, name, when):
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        calls.append(name)
        if calls.count(name) == when:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    setattr(module, name, wrapper)

if point == "validating":
    die_on(validation, "validate_image", 4)
elif point == "shard-write":  # the third record of the first shard
    die_on(tfrecord, "frame", 3)
elif point == "before-manifest":
    die_on(records, "write_manifest", 1)
elif point == "uploading":  # after the first of the files was uploaded
    original = storage.upload_dir

    def upload_half(folder, uri, **kwargs):
        first = sorted(os.listdir(folder))[0]
        storage.upload_file(os.path.join(folder, first), storage.join(uri, first))
        os.kill(os.getpid(), signal.SIGKILL)

    storage.upload_dir = upload_half
cfg = core.PrepareSettings(train_per_class=3, val_per_class=1, test_per_class=1, workers=1)
core.prepare(source, output, cfg, progress=False)
"""


def _source(folder: Path) -> Path:
    folder.mkdir()
    for i in range(5):
        for cls, shade in (("cat", 40), ("dog", 200)):
            buffer = io.BytesIO()
            Image.new("RGB", (90, 70), (shade, i * 50, 90)).save(buffer, "JPEG")
            (folder / f"{cls}.{i}.jpg").write_bytes(buffer.getvalue())
    return folder


@pytest.fixture
def temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TMPDIR of the test's own, for this process and its children."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _kill_at(point: str, source: str, output: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", KILLER, point, str(source), output],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == -9, (point, done.returncode, done.stderr[-2000:])


def _leftovers(output: str, temp: Path) -> list[str]:
    found = [p.name for p in temp.iterdir()]
    if not storage.is_remote(output) and Path(output).is_dir():
        found += [p.name for p in Path(output).iterdir() if ".tmp" in p.name]
    return found


def _check_rerun(source: Path, output: str, reference: Path, temp: Path) -> None:
    result = core.prepare(str(source), output, SMALL, progress=False)
    assert not result.already_prepared
    assert records.load_manifest(output).splits == records.load_manifest(reference).splits
    assert _leftovers(output, temp) == []


@pytest.mark.parametrize("point", ["validating", "shard-write", "before-manifest"])
def test_a_killed_local_prepare_reruns_without_manual_clean_up(
    tmp_path: Path, temp: Path, point: str
) -> None:
    source = _source(tmp_path / "src")
    reference = tmp_path / "reference"
    core.prepare(str(source), str(reference), SMALL, progress=False)
    output = tmp_path / "out"
    _kill_at(point, str(source), str(output))
    assert not (output / records.MANIFEST).exists()
    if point != "before-manifest":  # by then the spool is gone already
        assert [p.name for p in temp.iterdir() if p.name.startswith(tempdirs.PREFIX)]
    if point == "shard-write":
        names = [p.name for p in output.iterdir()]
        assert [n for n in names if n.startswith(".train-00000-of-00001.tfrecord.tmp-")], names
    _check_rerun(source, str(output), reference, temp)


@pytest.mark.parametrize("point", ["uploading", "before-manifest"])
def test_a_killed_remote_prepare_reruns_without_manual_clean_up(
    tmp_path: Path, temp: Path, remote_bucket: str, point: str
) -> None:
    bucket = remote_bucket  # gs:// and s3://
    source = _source(tmp_path / "src")
    reference = tmp_path / "reference"
    core.prepare(str(source), str(reference), SMALL, progress=False)
    storage.upload_dir(source, f"{bucket}/raw")
    output = f"{bucket}/prepared"
    _kill_at(point, f"{bucket}/raw", output)
    assert storage.list_files(output) and not storage.exists(storage.join(output, records.MANIFEST))
    result = core.prepare(f"{bucket}/raw", output, SMALL, progress=False)
    assert not result.already_prepared
    assert records.load_manifest(output).splits == records.load_manifest(reference).splits
    assert _leftovers(output, temp) == []


def test_disk_full_is_one_line_naming_the_folder_and_leaves_no_temp_files(
    tmp_path: Path, temp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _source(tmp_path / "src")
    output = tmp_path / "out"
    framed = tfrecord.frame

    def full_after_one(data: bytes, calls: list[int] = []) -> bytes:  # noqa: B006 - a counter
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return framed(data)

    monkeypatch.setattr(tfrecord, "frame", full_after_one)
    with pytest.raises(errors.StorageError) as caught:
        core.prepare(str(source), str(output), SMALL, progress=False)
    message = str(caught.value)
    assert message.startswith(f"No space left on the disk of {output} while writing the shards")
    assert "it needs about 0.0 MB" in message and "choose an --output on a larger disk" in message
    assert "\n" not in message and _leftovers(str(output), temp) == []

    def spool_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tfrecord, "frame", framed)
    monkeypatch.setattr(validation, "validate_image", spool_full)
    with pytest.raises(errors.StorageError, match=f"No space left on the disk of {temp} while"):
        core.prepare(str(source), str(output), SMALL, progress=False)
    assert _leftovers(str(output), temp) == []
    monkeypatch.undo()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    assert not core.prepare(str(source), str(output), SMALL, progress=False).already_prepared


def test_temporary_folders_of_killed_processes_are_removed_and_live_ones_kept(temp: Path) -> None:
    script = (
        "import os, signal, sys; from catsdogs.components.common import tempdirs\n"
        "with tempdirs.temporary('held') as folder:\n"
        "    (folder / 'big.bin').write_bytes(b'x' * 1000)\n"
        "    print(folder, flush=True)\n"
        "    if sys.argv[1] == 'kill': os.kill(os.getpid(), signal.SIGKILL)\n"
        "    sys.stdin.read()\n"
    )
    killed = subprocess.run(
        [sys.executable, "-c", script, "kill"], capture_output=True, text=True, timeout=60
    )
    assert killed.returncode == -9 and Path(killed.stdout.strip()).is_dir()
    alive = subprocess.Popen(
        [sys.executable, "-c", script, "wait"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        held = Path(alive.stdout.readline().strip())  # type: ignore[union-attr]
        with tempdirs.temporary("mine") as mine:
            remaining = sorted(p.name for p in temp.iterdir())
            assert remaining == sorted([held.parent.name, mine.parent.name])
    finally:
        alive.communicate("", timeout=60)
    assert alive.returncode == 0 and list(temp.iterdir()) == []
