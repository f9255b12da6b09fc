"""What ``catsdogs run`` and ``prepare`` say when the user's input is wrong: one line, in their terms."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from catsdogs.cli.app import app
from catsdogs.pipelines import task_errors
from catsdogs.pipelines.local_run import RUN_OPTIONS
from PIL import Image
from typer.testing import CliRunner


def _jpeg(path: Path, shade: int) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (shade, shade, 255 - shade)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue())


def test_run_whose_prepare_fails_ends_with_that_error(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    _jpeg(photos / "cat.1.jpg", 10)
    _jpeg(photos / "dog.1.jpg", 200)
    result = subprocess.run(
        [sys.executable, "-m", "catsdogs.cli", "run", "--source", str(photos)]
        + ["--output", str(tmp_path / "runs"), "--trainers", "transfer"]
        + ["--train-per-class", "2", "--val-per-class", "1", "--test-per-class", "1"],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: Too few images under {photos}: cat has 1 valid images")
    assert "--train-per-class/--val-per-class/--test-per-class" in last
    assert "--val-fraction" not in last  # a prepare option that run does not have
    assert "Traceback" not in result.stdout + result.stderr
    assert "prepare-dataset failed; its whole log: " in result.stdout
    log = Path(result.stdout.split("its whole log: ")[1].split()[0])
    assert "SourceError: Too few images" in log.read_text()


def test_user_error_is_the_last_catsdogs_error_of_the_traceback() -> None:
    tail = [
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "catsdogs.components.common.errors.SourceError: Too few images. Pass smaller --a.",
    ]
    assert task_errors.user_error(tail) == "Too few images. Pass smaller --a."
    # A bug raised while handling it is a bug: no one-line error.
    bug = [*tail, "", "During handling...", "catsdogs.components.common.storage.KeyError: 'x'"]
    assert task_errors.user_error(bug) is None
    assert task_errors.user_error(["ValueError: not ours"]) is None
    assert task_errors.user_error(["catsdogs.components.common.records.json: no class"]) is None


def test_advice_in_run_terms() -> None:
    message = (
        "--mode 'x' is not a mode. Pass --mode features. Or --features-dir, a train-transfer "
        "option. Also try --epochs 3."
    )
    assert task_errors.in_run_terms("train-transfer-2", message, RUN_OPTIONS) == (
        "--transfer-mode 'x' is not a mode. Pass --transfer-mode features. "
        "Also try --transfer-epochs 3."
    )


def test_zero_images_says_links_are_not_followed(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _jpeg(elsewhere / "cat.1.jpg", 10)
    _jpeg(elsewhere / "dog.1.jpg", 200)
    source = tmp_path / "source"
    source.mkdir()
    (source / "cats").symlink_to(elsewhere)  # a link to a folder: not descended into
    (source / "dog.1.jpg").symlink_to(elsewhere / "dog.1.jpg")  # leaves the folder: not followed
    result = CliRunner().invoke(
        app, ["prepare", "--source", str(source), "--output", str(tmp_path / "out")]
    )
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "found 0 cat and 0 dog images" in line
    assert "2 symbolic links were not followed" in line
    assert f"e.g. cats/ -> {elsewhere}" in line
    assert "point --source at the folder the links lead to" in line
    assert len(line.splitlines()) == 1


def test_output_of_another_run_is_a_short_message(tmp_path: Path) -> None:
    import json

    import pytest
    from catsdogs.components.common.errors import OutputConflictError
    from catsdogs.components.common.training.checkpoint import output_status

    settings = {f"setting_{index:02d}": "x" * 60 for index in range(20)}
    ours = {"kind": "train-scratch", "settings": settings, "data_manifest_sha256": "a"}
    (tmp_path / "run.json").write_text(json.dumps({"identity": ours}))
    transfer = dict(ours, kind="train-transfer")
    with pytest.raises(OutputConflictError) as caught:
        output_status(str(tmp_path), transfer)
    message = str(caught.value)
    assert "(a train-scratch run there, train-transfer asked; all of its settings: " in message
    assert len(message.replace(str(tmp_path), "OUT")) < 300, message
    changed = dict(ours, settings={key: "y" for key in settings}, data_manifest_sha256="b")
    with pytest.raises(OutputConflictError) as caught:
        output_status(str(tmp_path), changed)
    message = str(caught.value)
    assert "setting_00='xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... there, 'y' asked" in message
    assert ", 18 more differences; all of its settings: " in message  # 20 settings + dataset
    assert "setting_03" not in message
    assert len(message.replace(str(tmp_path), "OUT")) < 450, message
