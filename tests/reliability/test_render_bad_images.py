"""A pixel bomb (or any unreadable image) given to ``render`` is a per-file error, not a stop."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.tiny_models import flat_model, save_model_dir, write_jpeg


def _bomb(path: Path, side: int = 20000) -> Path:
    """A small valid JPEG whose header claims ``side`` x ``side`` pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 90, 90)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = side.to_bytes(2, "big") * 2
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_model_dir(flat_model(), tmp_path_factory.mktemp("model") / "model")


def test_render_reports_a_pixel_bomb_and_renders_the_other_images(
    tmp_path: Path, model: str
) -> None:
    from catsdogs.cli.app import app

    first = write_jpeg(tmp_path / "a.jpg", seed=1)
    bomb = _bomb(tmp_path / "b_bomb.jpg")
    last = write_jpeg(tmp_path / "c.jpg", seed=2)
    out = tmp_path / "out"
    args = ["render", "--model", model, "--output", str(out)]
    images = ["--image", str(first), "--image", str(bomb), "--image", str(last)]
    result = CliRunner().invoke(app, [*args, *images])
    assert result.exit_code == 1, result.output
    assert [line.rsplit("\t", 1)[-1] for line in result.stdout.splitlines()[:2]] == [
        "a.jpg",
        "c.jpg",
    ]
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR\t")]
    assert len(errors) == 1 and f"{bomb}\t" in errors[0]
    assert "b_bomb.jpg is a decompression bomb" in errors[0]
    assert "1 image(s) could not be read" in result.stderr
    assert (out / "01-a" / "gradcam.png").is_file() and (out / "02-c" / "gradcam.png").is_file()
    assert (out / "index.html").is_file()


def test_render_with_no_readable_image_is_one_line(tmp_path: Path, model: str) -> None:
    from catsdogs.cli.app import app

    args = ["render", "--model", model, "--output", str(tmp_path / "out")]
    bombs = ["--image", str(_bomb(tmp_path / "x.jpg")), "--image", str(_bomb(tmp_path / "y.jpg"))]
    result = CliRunner().invoke(app, [*args, *bombs])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "x.jpg is a decompression bomb" in result.stderr and "2 images, none readable" in (
        result.stderr
    )
    assert not (tmp_path / "out").exists()
