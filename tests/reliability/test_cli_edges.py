"""The edges of every command: empty locations, read-only and full disks, files in the way.

Each ends in one line on stderr and exit code 2, names the value, and writes nothing (an empty
location used to mean the current folder: ``export --output ""`` exported into it).
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import make_tiny_dataset
from tests.tiny_models import flat_model, save_model_dir, write_jpeg

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A dataset, a folder of photos and a model folder (its model.keras only a placeholder:
    these commands must fail on their output before they load anything)."""
    root = tmp_path_factory.mktemp("edges")
    model = root / "model"
    model.mkdir()
    (model / "model.keras").write_bytes(b"not loaded")
    data = make_tiny_dataset(root / "data", per_class=2, size=48)
    photos = root / "photos"
    for index in range(3):
        for name in ("cat", "dog"):
            write_jpeg(photos / f"{name}.{index}.jpg", size=40, seed=index + 10 * (name == "dog"))
    return {"model": str(model), "data": data, "photos": str(photos), "root": str(root)}


@pytest.fixture(scope="module")
def real_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real tiny Keras model (48x48), for the export that has to get as far as writing."""
    return save_model_dir(flat_model(size=48), tmp_path_factory.mktemp("model") / "model")


def _one_line_error(args: list[str]) -> str:
    from catsdogs.cli.app import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()  # progress lines may come first
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert sum(line.startswith("Error: ") for line in lines) == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return lines[-1]


# ------------------------------------------------------------------ finding 12: empty locations

# Every command and option that takes a location, with the other options it needs.
_EMPTY = {
    "prepare --output": ["prepare", "--source", "{photos}", "--output", ""],
    "prepare --source": ["prepare", "--source", " ", "--output", "{root}/p"],
    "train-scratch --data": ["train-scratch", "--data", "", "--output", "{root}/m"],
    "train-scratch --output": ["train-scratch", "--data", "{data}", "--output", ""],
    "train-transfer --output": ["train-transfer", "--data", "{data}", "--output", ""],
    "train-transfer --weights": [
        "train-transfer", "--data", "{data}", "--output", "{root}/t", "--weights", "",
    ],
    "evaluate --model": ["evaluate", "--model", "", "--data", "{data}", "--output", "{root}/e"],
    "evaluate --output": ["evaluate", "--model", "{model}", "--data", "{data}", "--output", ""],
    "promote --champion": [
        "promote", "--model", "{model}", "--evaluation", "{root}/e", "--data", "{data}",
        "--champion", "",
    ],
    "render --output": ["render", "--model", "{model}", "--data", "{data}", "--output", ""],
    "render --image": ["render", "--model", "{model}", "--output", "{root}/r", "--image", ""],
    "predict IMAGE": ["predict", "--model", "{model}", ""],
    "export --output": ["export", "--model", "{model}", "--output", ""],
    "export --model": ["export", "--model", "", "--output", "{root}/s"],
    "serve --model": ["serve", "--model", "", "--port", "1"],
    "deploy --serving-uri": ["deploy", "--serving-uri", "", "--dry-run"],
    "compile --output": ["compile", "--output", ""],
    "run --output": ["run", "--source", "{photos}", "--output", ""],
    "run --source": ["run", "--source", "", "--output", "{root}/runs"],
    "submit --source": ["submit", "--source", "", "--host", "http://127.0.0.1:9"],
    "schedule create --source": [
        "schedule", "create", "--source", "", "--cron", "0 3 * * *", "--host", "http://127.0.0.1:9",
    ],
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(_EMPTY))
def test_an_empty_location_is_refused_by_every_command(
    case: str, work: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    args = [arg.format(**work) for arg in _EMPTY[case]]
    message = _one_line_error(args)
    option = case.split()[-1]
    assert f"{option} is empty (" in message, message
    assert list(cwd.iterdir()) == []


@pytest.mark.parametrize("uri", ["", "  ", "gs://", "gs:///prefix"])
def test_the_storage_layer_refuses_empty_locations_and_bucketless_uris(uri: str) -> None:
    from catsdogs.components.common import storage

    for call in (
        lambda: storage.join(uri, "x"),
        lambda: storage.exists(uri),
        lambda: storage.write_text(uri, "x"),
        lambda: storage.list_files(uri),
        lambda: storage.check_folder(uri, "--output"),
    ):
        with pytest.raises(storage.StorageError, match="empty|names no bucket"):
            call()


# ------------------------------------------------------- finding 11: read-only and full disks


def _read_only_words(message: str) -> bool:
    return "read-only file system" in message or "permission denied" in message


_READ_ONLY = {
    "prepare": [
        "prepare", "--source", "{photos}", "--output", "{ro}/data", "--workers", "1",
        "--val-fraction", "0.34", "--test-fraction", "0.34",
    ],
    "train-scratch": [
        "train-scratch", "--data", "{data}", "--output", "{ro}/model", "--epochs", "1",
        "--image-size", "48", "--batch-size", "2",
    ],
    "evaluate": ["evaluate", "--model", "{model}", "--data", "{data}", "--output", "{ro}/eval"],
    "render": ["render", "--model", "{model}", "--data", "{data}", "--output", "{ro}/render"],
    "export": ["export", "--model", "{model}", "--output", "{ro}/serving"],
    "run": ["run", "--source", "{photos}", "--output", "{ro}/runs"],
}  # fmt: skip


@pytest.mark.parametrize("command", sorted(_READ_ONLY))
def test_a_read_only_output_is_one_line(
    command: str, work: dict[str, str], read_only_dir: Path
) -> None:
    args = [arg.format(ro=read_only_dir, **work) for arg in _READ_ONLY[command]]
    message = _one_line_error(args)
    assert str(read_only_dir) in message and _read_only_words(message), message


def test_a_read_only_champion_is_one_line(promotable: dict, read_only_dir: Path) -> None:
    model, evaluation = promotable["first"]
    champion = read_only_dir / "champion"
    message = _one_line_error(
        ["promote", "--model", model, "--evaluation", evaluation, "--data", promotable["data"],
         "--champion", str(champion)]
    )  # fmt: skip
    assert str(champion) in message and _read_only_words(message), message


def test_a_champion_lock_that_is_a_folder_is_one_line(promotable: dict, tmp_path: Path) -> None:
    model, evaluation = promotable["first"]
    champion = tmp_path / "champion"
    (champion / ".champion.lock").mkdir(parents=True)
    message = _one_line_error(
        ["promote", "--model", model, "--evaluation", evaluation, "--data", promotable["data"],
         "--champion", str(champion)]
    )  # fmt: skip
    assert f"{champion / '.champion.lock'} is not a file" in message, message
    assert "rmdir" in message


@pytest.mark.parametrize("command", ["export", "render", "train-scratch", "evaluate"])
def test_a_file_given_as_output_folder_is_one_line(
    command: str, work: dict[str, str], tmp_path: Path
) -> None:
    blocker = tmp_path / "taken"
    blocker.write_text("mine")
    args = {
        "export": ["export", "--model", work["model"]],
        "render": ["render", "--model", work["model"], "--data", work["data"]],
        "train-scratch": ["train-scratch", "--data", work["data"], "--image-size", "48"],
        "evaluate": ["evaluate", "--model", work["model"], "--data", work["data"]],
    }[command]
    message = _one_line_error([*args, "--output", str(blocker)])
    assert f"--output {blocker} is not a folder: {blocker} is a file" in message, message
    assert blocker.read_text() == "mine"


def test_a_full_serving_disk_during_export_is_one_line(full_disk, tmp_path: Path) -> None:
    from catsdogs.components.common.errors import describe_os_error
    from catsdogs.components.serve import export

    disk = full_disk(96)
    saved = tmp_path / "saved"  # what export publishes: a SavedModel folder, larger than the disk
    for name in ("saved_model.pb", "variables/variables.data-00000-of-00001"):
        (saved / name).parent.mkdir(parents=True, exist_ok=True)
        (saved / name).write_bytes(os.urandom(64 * 1024))
    with pytest.raises(OSError) as caught:
        export.publish(saved, f"{disk}/s/1")
    message = describe_os_error(caught.value)  # what the CLI prints for every command
    assert message is not None, caught.value
    assert message.startswith(f"No space left on the disk of {disk}/s ("), message
    assert "MB are free" in message and ".tmp-" not in message, message
    assert not [p for p in disk.rglob("*") if p.is_file()], "a partial copy was left behind"


def test_a_full_tmpdir_during_export_is_one_line_naming_tmpdir(
    real_model: str, full_disk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk = full_disk(12)
    monkeypatch.setenv("TMPDIR", str(disk))
    monkeypatch.setattr(tempfile, "tempdir", str(disk))
    message = _one_line_error(["export", "--model", real_model, "--output", f"{tmp_path}/s"])
    assert "No space left on the disk of" in message and f"(in TMPDIR {disk})" in message, message
    assert "set TMPDIR to a folder on a larger disk" in message
    assert not (tmp_path / "s" / "1").exists()


def test_an_internal_bug_still_shows_its_traceback() -> None:
    from catsdogs.components.common.errors import describe_os_error

    assert describe_os_error(FileNotFoundError(errno.ENOENT, "No such file", "/x")) is None
    assert describe_os_error(KeyError("path")) is None
    assert describe_os_error(OSError(errno.EROFS, os.strerror(errno.EROFS), "/x")) == (
        "/x is on a read-only file system. Write to a folder on a writable disk (or a gs:// "
        "prefix) instead."
    )
