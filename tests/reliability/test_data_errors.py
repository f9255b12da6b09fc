"""Bad artifacts and outputs give one-line errors that name the file and the fix."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from catsdogs.components.common import errors, model_dir
from catsdogs.components.evaluate import core as evaluation
from catsdogs.components.prepare_dataset import core, validation
from PIL import Image

from tests.conftest import make_tiny_dataset


def test_a_corrupt_model_file_is_called_that_not_file_not_found(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / model_dir.MODEL_FILE).write_bytes(b"PK\x03\x04 but then garbage" * 40)
    with pytest.raises(errors.ModelError) as caught:
        model_dir.load_model(str(folder))
    message = str(caught.value)
    assert message.startswith(f"{folder / model_dir.MODEL_FILE} is not a Keras model file")
    assert "File not found" not in message and "Train the model again" in message


@pytest.mark.parametrize(
    ("text", "found"), [("{not json", "is not valid JSON"), ("[1]", "holds list")]
)
def test_a_bad_evaluation_json_names_the_file(tmp_path: Path, text: str, found: str) -> None:
    (tmp_path / "evaluation.json").write_text(text)
    with pytest.raises(evaluation.InvalidEvaluationError) as caught:
        evaluation.load_evaluation(str(tmp_path))
    assert str(caught.value).startswith(f"{tmp_path / 'evaluation.json'} {found}")
    assert "Run `catsdogs evaluate` again" in str(caught.value)
    assert isinstance(caught.value, errors.CatsdogsError)


def _source(folder: Path) -> Path:
    folder.mkdir()
    for cls in ("cat", "dog"):
        for i in range(5):
            buffer = io.BytesIO()
            Image.new("RGB", (40, 30), (i * 40, 90, 30)).save(buffer, "JPEG")
            (folder / f"{cls}.{i}.jpg").write_bytes(buffer.getvalue())
    return folder


def test_an_output_that_is_a_file_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _source(tmp_path / "src")
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("validation ran although the output is unusable")

    monkeypatch.setattr(validation, "validate_all", no_work)
    cfg = core.PrepareSettings(train_per_class=3, val_per_class=1, test_per_class=1, workers=1)
    for output in (taken, taken / "below"):
        with pytest.raises(
            errors.OutputConflictError,
            match=re.escape(f"--output {output} is not a folder: {taken} is a file"),
        ):
            core.prepare(str(source), str(output), cfg, progress=False)
    data = make_tiny_dataset(tmp_path / "data", per_class=2, size=16)
    with pytest.raises(errors.OutputConflictError, match="is not a folder"):
        evaluation.evaluate(str(tmp_path / "no-model"), data, str(taken))
    assert taken.read_text() == "mine"
