"""A disk that fills up while a trainer writes its checkpoints or outputs: one line, no temp files."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from catsdogs.components.common import errors
from catsdogs.components.train_scratch import core

SETTINGS = core.ScratchSettings(epochs=1, batch_size=4, image_size=(48, 48))


@pytest.fixture
def temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A TMPDIR of the test's own."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _full_when_writing(monkeypatch: pytest.MonkeyPatch, wanted: Callable[[str], bool]) -> None:
    """Make every atomic write (its fsync) whose file name ``wanted`` accepts fail with ENOSPC."""
    fsync = os.fsync

    def full(fd: int) -> None:
        if wanted(Path(os.readlink(f"/proc/self/fd/{fd}")).name):
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", full)


def _ours(temp: Path) -> list[str]:
    """What this project left in TMPDIR (TensorFlow's autograph files are not ours)."""
    return [p.name for p in temp.iterdir() if p.name.startswith("catsdogs-")]


def _temp_files(*folders: Path) -> list[str]:
    return [str(p) for folder in folders for p in folder.rglob("*") if ".tmp" in p.name]


def test_disk_full_writing_a_checkpoint_is_one_line_naming_the_folder(
    tiny_dataset, tmp_path: Path, temp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tiny_dataset(per_class=2, size=48)
    out = tmp_path / "model"
    _full_when_writing(monkeypatch, lambda name: name.startswith(".model-epoch-"))
    with pytest.raises(errors.StorageError) as caught:
        core.train_scratch(data, str(out), SETTINGS)
    message = str(caught.value)
    assert message.startswith(
        f"No space left on the disk of {out / '.checkpoint'} while writing model-epoch-00001.keras"
    )
    assert "it needs about" in message and "choose an --output (or --checkpoint-dir)" in message
    assert "\n" not in message
    assert _temp_files(out) == [] and _ours(temp) == []


def test_disk_full_writing_the_outputs_is_one_line_and_the_rerun_finishes(
    tiny_dataset, tmp_path: Path, temp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tiny_dataset(per_class=2, size=48)
    out = tmp_path / "model"
    _full_when_writing(monkeypatch, lambda name: name.startswith(".history.json"))
    with pytest.raises(errors.StorageError) as caught:
        core.train_scratch(data, str(out), SETTINGS)
    assert str(caught.value).startswith(
        f"No space left on the disk of {out} while writing history.json, metrics.json, curves.png: "
        "it needs about"
    )
    assert _temp_files(out) == [] and _ours(temp) == []
    assert not (out / "model.keras").exists()
    monkeypatch.undo()
    assert core.train_scratch(data, str(out), SETTINGS).status in ("trained", "resumed")
    assert (out / "model.keras").is_file()


def test_full_tmpdir_while_staging_a_model_names_tmpdir_and_removes_the_staging_folder(
    tiny_dataset, tmp_path: Path, temp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    def save_half(self: object, path: str | os.PathLike[str], **kwargs: object) -> None:
        Path(path).write_bytes(b"PK\x03\x04 half a zip")
        raise OSError(errno.ENOSPC, "No space left on device")

    data = tiny_dataset(per_class=2, size=48)
    monkeypatch.setattr(keras.Model, "save", save_half)
    with pytest.raises(errors.StorageError) as caught:
        core.train_scratch(data, str(tmp_path / "model"), SETTINGS)
    message = str(caught.value)
    assert message.startswith(f"No space left on the disk of {temp} while writing model-epoch-")
    assert "set TMPDIR to a folder on a larger disk" in message
    assert _ours(temp) == []
