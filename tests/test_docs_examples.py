"""The plain-Keras examples of the README and docs/ work as written, on the real architecture."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"```python\n(?P<code>.*?)```", re.S)
_LOADED = re.compile(r"""load_model\(["'](?P<path>[^"']+\.keras)["']\)""")


def _examples() -> list[tuple[str, str]]:
    found = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for index, match in enumerate(_BLOCK.finditer(doc.read_text(encoding="utf-8"))):
            if _LOADED.search(match["code"]):
                found.append((f"{doc.relative_to(REPO)}#{index}", match["code"]))
    return found


EXAMPLES = _examples()


def test_the_docs_have_a_plain_keras_example() -> None:
    assert any(name.startswith("docs/components.md") for name, _ in EXAMPLES), EXAMPLES


@pytest.fixture(scope="module")
def seed_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed's CNN as train-scratch saves it: without augmentation (untrained: shapes matter)."""
    from catsdogs.components.common.training.run import write_outputs
    from catsdogs.components.train_scratch.core import ScratchSettings, build_model, inference_model

    settings = ScratchSettings()
    folder = tmp_path_factory.mktemp("model")
    write_outputs(
        str(folder), inference_model(build_model(settings), settings), {"loss": [1.0]}, {}
    )
    return folder / "model.keras"


@pytest.mark.parametrize(("name", "code"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_example_runs_as_written(name: str, code: str, seed_model: Path, tmp_path: Path) -> None:
    target = tmp_path / _LOADED.search(code)["path"]  # type: ignore[index]
    target.parent.mkdir(parents=True)
    os.link(seed_model, target)
    Image.new("RGB", (300, 200), (120, 90, 60)).save(tmp_path / "cat.jpg")  # not 150 x 150
    # A fresh interpreter that never imports catsdogs: plain Keras, as a user would run it.
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    probability = re.search(r"\d\.\d+(e-\d+)?", done.stdout)
    assert probability is not None, done.stdout
    assert 0.0 <= float(probability.group(0)) <= 1.0


def test_what_the_docs_say_the_model_takes(seed_model: Path) -> None:
    code = f"""
import keras, numpy as np
model = keras.models.load_model({str(seed_model)!r})
print(model.input_shape, model.output_shape)
try:
    model(np.zeros((1, 200, 300, 3), "float32"))
except ValueError as error:
    print("refused:", str(error).splitlines()[0])
pixels = np.full((1, 150, 150, 3), 128, dtype="uint8")
a = model.predict(pixels, verbose=0)
b = model.predict(pixels.astype("float32"), verbose=0)
print("same:", bool(np.allclose(a, b, rtol=1e-6)))
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "(None, 150, 150, 3) (None, 1)"
    assert lines[1].startswith("refused: ") and "expected shape=(None, 150, 150, 3)" in lines[1]
    assert lines[2] == "same: True"  # uint8 or float32 in [0, 255]
