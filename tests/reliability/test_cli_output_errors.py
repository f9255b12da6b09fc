"""``compile --output`` and ``run --output`` at a wrong kind of path: one line and the fix."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner


def _one_line_error(args: list[str]) -> str:
    from catsdogs.cli.app import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def test_compile_output_that_is_a_folder_is_refused_with_a_file_name(tmp_path: Path) -> None:
    folder = tmp_path / "compiled"
    folder.mkdir()
    message = _one_line_error(["compile", "--output", str(folder)])
    assert f"--output {folder} is a folder" in message
    assert f"--output {folder / 'catsdogs.yaml'}" in message
    assert list(folder.iterdir()) == [] and [p.name for p in tmp_path.iterdir()] == ["compiled"]


def test_compile_output_below_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    message = _one_line_error(["compile", "--output", str(blocker / "pipeline.yaml")])
    assert f"lies below {blocker}, which is a file" in message
    assert blocker.read_text() == "mine"


def test_run_output_that_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "runs"
    blocker.write_text("mine")
    source = tmp_path / "photos"
    source.mkdir()
    for target in (blocker, blocker / "inside"):
        message = _one_line_error(["run", "--source", str(source), "--output", str(target)])
        assert f"--output {target} is not a folder: {blocker} is a file" in message
    assert blocker.read_text() == "mine"
