"""Progress where people wait: the shared helper and the commands that use it."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from catsdogs.cli.app import app
from catsdogs.components.common.progress import Progress, keras_epochs
from PIL import Image
from typer.testing import CliRunner

from tests.tiny_models import flat_model, save_model_dir

LINE = r"(?P<n>\d+)/(?P<total>\d+) images, \d+\.\d images/s"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_every_interval_and_a_last_one() -> None:
    stream = io.StringIO()
    with Progress("Features of train", 5, stream=stream, interval=0) as bar:
        for _ in range(5):
            bar.update()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5, lines  # one per update (interval 0) but the last, then the ending
    assert all(re.fullmatch(rf"Features of train: {LINE}", line) for line in lines[:4])
    assert [line.split(":")[1].split()[0] for line in lines[:4]] == ["1/5", "2/5", "3/5", "4/5"]
    assert re.fullmatch(
        r"Features of train: 5/5 images, \d+\.\d images/s, done in \d+\.\d s", lines[4]
    )


def test_log_lines_wait_for_the_interval() -> None:
    stream = io.StringIO()
    with Progress("Evaluating test", 1000, stream=stream, interval=3600) as bar:
        bar.update(999)
        bar.update(1)
    assert stream.getvalue().splitlines() == [bar.line(finished=True)]
    assert bar.line().startswith("Evaluating test: 1000/1000 images, ")


def test_a_failed_run_writes_no_ending_and_disabled_writes_nothing() -> None:
    stream = io.StringIO()
    with pytest.raises(RuntimeError), Progress("x", 3, stream=stream, interval=3600) as bar:
        bar.update()
        raise RuntimeError("boom")
    assert stream.getvalue() == ""
    quiet = io.StringIO()
    with Progress("x", 3, stream=quiet, interval=0, enabled=False) as bar:
        bar.update(3)
    assert quiet.getvalue() == ""


def test_a_bar_on_a_terminal() -> None:
    terminal = _Terminal()
    with Progress("Predicting", 4, stream=terminal, interval=0) as bar:
        for _ in range(4):
            bar.update()
    shown = terminal.getvalue()
    assert shown.startswith("\rPredicting:   0%|") and "| 0/4 [" in shown  # tqdm's bar
    assert shown.endswith("\r" + " " * 100 + "\r")  # removed when done (leave=False)
    assert "done in" not in shown  # no log lines on a terminal


def test_every_training_epoch_shows_its_images() -> None:
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="sgd", loss="binary_crossentropy")
    x, y = np.zeros((10, 2), "float32"), np.ones((10, 1), "float32")
    stream = io.StringIO()
    shown = keras_epochs(2, 10, 4, stream=stream, interval=0)
    model.fit(x, y, batch_size=4, epochs=2, verbose=0, callbacks=[shown])
    lines = stream.getvalue().splitlines()
    for epoch in (1, 2):
        counts = [
            (int(m["n"]), int(m["total"]))
            for line in lines
            if (m := re.fullmatch(rf"Epoch {epoch}/2 train: {LINE}", line))
        ]
        assert counts == [(4, 10), (8, 10)], lines  # the epoch's own line reports the end


def test_feature_extraction_shows_its_images() -> None:
    import keras
    import tensorflow as tf
    from catsdogs.components.train_transfer.features import extract_features

    extractor = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D()])
    images = tf.data.Dataset.from_tensor_slices(
        (np.zeros((6, 8, 8, 3), "float32"), np.zeros((6,), "float32"))
    ).batch(4)
    stream = io.StringIO()
    with Progress("Features of val", 6, stream=stream, interval=0) as bar:
        features, _ = extract_features(extractor, images, progress=bar)
    assert features.shape == (6, 3)
    lines = stream.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "Features of val: 4/6 images",
        "Features of val: 6/6 images",  # the ending only
    ]
    assert lines[1].endswith(" s") and ", done in " in lines[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_model_dir(flat_model(), tmp_path_factory.mktemp("models") / "flat")


def test_evaluate_prints_sentences_first_and_json_on_request(
    tmp_path: Path, tiny_dataset, model_dir: str
) -> None:
    data = tiny_dataset(per_class=2, size=32)
    base = ["evaluate", "--model", model_dir, "--data", data]
    result = CliRunner().invoke(app, [*base, "--output", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert re.fullmatch(
        r"Accuracy \d\.\d{3} \(95% interval \d\.\d{3} to \d\.\d{3}\) on 4 test images "
        r"\(2 cat, 2 dog\)\.",
        lines[0],
    )
    assert lines[1].startswith("Positive class dog: precision ")
    assert lines[2] == f"Report: {tmp_path / 'e' / 'report.html'}"
    assert re.search(r"^Evaluating test: 4/4 images, .*, done in ", result.stderr, re.M)
    as_json = CliRunner().invoke(app, [*base, "--output", str(tmp_path / "j"), "--json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout)["test_count"] == 4


def test_evaluate_with_champion_and_promote_say_the_decision(
    tmp_path: Path, tiny_dataset, model_dir: str
) -> None:
    data = tiny_dataset(per_class=2, size=32)
    champion = str(tmp_path / "champion")
    result = CliRunner().invoke(
        app,
        ["evaluate", "--model", model_dir, "--data", data, "--output", str(tmp_path / "e")]
        + ["--champion", champion],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[3] == (
        f"Promoted: version 1 is the champion at {champion} "
        "(no champion yet: this model becomes the first)."
    )
    again = CliRunner().invoke(
        app,
        ["promote", "--model", model_dir, "--evaluation", str(tmp_path / "e"), "--data", data]
        + ["--champion", champion],
    )
    assert again.exit_code == 0, again.output
    assert again.stdout == (
        "Not promoted: this model is already the champion; the champion stays version 1 at "
        f"{champion}.\n"
    )


def test_predict_on_many_files_shows_progress_and_names_a_corrupt_file(
    tmp_path: Path, model_dir: str
) -> None:
    for index in range(3):
        Image.new("RGB", (32, 32), (index * 80, 0, 0)).save(tmp_path / f"cat.{index}.jpg")
    bad = tmp_path / "cat.9.jpg"
    bad.write_bytes(b"not a jpeg at all")
    result = CliRunner().invoke(app, ["predict", "--model", model_dir, str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert len(result.stdout.splitlines()) == 3
    assert re.search(r"^Predicting: 4/4 images, .*, done in ", result.stderr, re.M)
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert error == (
        f"ERROR\t{bad}\t{bad} is not a decodable image (UnidentifiedImageError: cannot identify "
        "image file). Expected a JPEG/PNG/BMP/GIF/WebP file; remove it or re-export it."
    )
    assert "BytesIO" not in result.output
