"""Findings 1 and 14 (issue 21): a half-written export is not a version; versions fit in int64; one
JPEG decoder setting in training, evaluation, prediction and serving.

- A version is complete only when its ``saved_model.pb`` exists: uploaded last, checked on reuse;
  a rerun finishes (replaces) an export whose ``saved_model.pb`` never arrived instead of saying
  "already holds this model", and ``catsdogs serve`` refuses it in one line.
- ``export --version`` beyond int64 is refused in one line, nothing written.
- The training reader decodes the stored JPEG bytes to exactly Pillow's pixels.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from catsdogs.cli.app import app
from catsdogs.components.common import images, records, storage
from typer.testing import CliRunner

from tests.conftest import make_tiny_dataset
from tests.tiny_models import flat_model, save_model_dir

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return save_model_dir(flat_model(size=32, seed=5), tmp_path_factory.mktemp("m") / "model")


def graphs(serving: str) -> list[str]:
    return [n for n in storage.list_files(serving) if n.endswith("saved_model.pb")]


@pytest.mark.gcs
def test_gcs_export_uploads_saved_model_last_and_a_rerun_finishes_a_half_written_one(
    model: str, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    serving = f"{bucket}/serving"
    order: list[str] = []
    real_upload = storage.upload_file

    def recording(local: object, uri: str, **kwargs: object) -> None:
        order.append(uri)
        real_upload(local, uri, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(storage, "upload_file", recording)
    first = runner.invoke(app, ["export", "--model", model, "--output", serving])
    assert first.exit_code == 0, first.output
    assert order and order[-1].endswith("/saved_model.pb")  # the graph is the last object
    [graph] = graphs(serving)
    storage.delete(storage.join(serving, graph))  # killed before its last upload
    order.clear()
    served = runner.invoke(app, ["serve", "--model", serving])
    assert served.exit_code == 2 and "Traceback" not in served.output
    assert "saved_model.pb" in served.output
    again = runner.invoke(app, ["export", "--model", model, "--output", serving])
    assert again.exit_code == 0, again.output
    assert "already holds" not in again.output and "Exported version" in again.output
    assert graphs(serving) == [graph] and order[-1].endswith("/saved_model.pb")


def test_local_half_written_export_is_replaced_not_called_done(model: str, tmp_path: Path) -> None:
    serving = tmp_path / "serving"
    assert runner.invoke(app, ["export", "--model", model, "--output", str(serving)]).exit_code == 0
    [graph] = graphs(str(serving))
    (serving / graph).unlink()  # a copy cut short
    (serving / graph).parent.joinpath("variables", "stray.bin").write_bytes(b"junk")
    again = runner.invoke(app, ["export", "--model", model, "--output", str(serving)])
    assert again.exit_code == 0 and "already holds" not in again.output, again.output
    assert (serving / graph).is_file()
    assert not (serving / graph).parent.joinpath("variables", "stray.bin").exists()


@pytest.mark.parametrize("version", ["99999999999999999999", str(2**63), "0", "-3"])
def test_export_version_must_fit_int64(model: str, tmp_path: Path, version: str) -> None:
    result = runner.invoke(
        app, ["export", "--model", model, "--output", str(tmp_path / "s"), "--version", version]
    )
    assert result.exit_code == 2, result.output
    assert "--version" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "s").exists()


def test_training_reader_decodes_jpegs_as_pillow_does(tmp_path: Path) -> None:
    import tensorflow as tf

    data = make_tiny_dataset(tmp_path / "data", per_class=3, size=48)
    manifest = records.load_manifest(data)
    decoded = list(records.read_split(Path(data), manifest, "train", None))
    raw = tf.data.TFRecordDataset(records.shard_paths(Path(data), manifest, "train"))
    spec = {"image": tf.io.FixedLenFeature([], tf.string)}
    stored = [tf.io.parse_single_example(r, spec)["image"].numpy() for r in raw]
    assert len(decoded) == len(stored) == 6
    differing = 0
    for (image, _), blob in zip(decoded, stored, strict=True):
        fast = tf.io.decode_jpeg(blob, channels=3).numpy()  # TensorFlow's default DCT
        differing += int(not np.array_equal(fast, images.decode(blob, "stored")))
        np.testing.assert_array_equal(image.numpy(), images.decode(blob, "stored"))
    assert differing > 0  # the images are ones where the DCT setting shows


def test_real_photos_decode_alike_in_graph_reader_and_pillow() -> None:
    from tests.conftest import TRAIN_6000

    if not TRAIN_6000.is_dir():
        pytest.skip(f"no real photos at {TRAIN_6000}")
    import tensorflow as tf
    from PIL import Image

    for path in sorted(TRAIN_6000.glob("*.jpg"))[:20]:
        blob = path.read_bytes()
        with Image.open(io.BytesIO(blob)) as opened:
            if opened.getexif().get(0x0112, 1) != 1:
                continue
        graph = images.decode_jpeg(tf.constant(blob)).numpy()
        np.testing.assert_array_equal(graph, images.decode(blob, str(path)), err_msg=path.name)
