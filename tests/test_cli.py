"""The CLI as a whole: user errors in one line, bugs with their traceback, a light ``--help``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from catsdogs.cli.app import app
from catsdogs.components.common.errors import SourceError
from catsdogs.components.prepare_dataset import core
from typer.testing import CliRunner


def test_a_user_error_is_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object) -> None:
        raise SourceError("source /nope holds no images.\nsecond line")

    monkeypatch.setattr(core, "prepare", refuse)
    result = CliRunner().invoke(app, ["prepare", "--output", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.output.strip() == "Error: source /nope holds no images."


@pytest.mark.parametrize("bug", [ValueError("bad"), KeyError("k"), FileNotFoundError("f")])
def test_an_internal_bug_keeps_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bug: Exception
) -> None:
    def broken(*_: object) -> None:
        raise bug

    monkeypatch.setattr(core, "prepare", broken)
    result = CliRunner().invoke(app, ["prepare", "--output", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.exception is bug
    assert "Error:" not in result.output


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "from catsdogs.cli.app import main\n"
        "sys.argv = ['catsdogs', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('tensorflow', 'keras', 'kfp', 'matplotlib', 'google.cloud.storage')\n"
        "print('HEAVY', sorted(name for name in heavy if name in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "train-scratch" in done.stdout
    assert "HEAVY []" in done.stdout


def test_python_m_runs_the_same_app() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "catsdogs.cli", "schedule", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "create" in done.stdout and "delete" in done.stdout
