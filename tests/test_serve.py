"""Serving: SavedModel export, the local KServe server (V1 + V2) and the InferenceService apply."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from catsdogs.cli.serve import app
from catsdogs.components.common import images, storage
from catsdogs.components.common.errors import ModelError, OutputConflictError, SettingsError
from catsdogs.components.serve import deploy, export, signatures
from typer.testing import CliRunner

from tests.conftest import TRAIN_6000, _free_port
from tests.k8s_recording_server import RecordingServer
from tests.tiny_models import flat_model, nested_model, save_model_dir, write_jpeg

runner = CliRunner()


def photos(folder: Path) -> list[Path]:
    """Four real cats and four real dogs when ../shared is there, else synthetic JPEGs."""
    if TRAIN_6000.is_dir():
        return [TRAIN_6000 / f"{name}.{i}.jpg" for name in ("cat", "dog") for i in range(4)]
    return [
        write_jpeg(folder / f"synthetic{i}.jpg", size=50 + 7 * i, seed=i, exif_rotate=i % 2 == 1)
        for i in range(8)
    ]


def predicted(model: str, files: list[Path]) -> dict[str, float]:
    from catsdogs.components.predict import core as predictor

    return {
        Path(p.image).name: p.positive for p in predictor.predict(model, [str(f) for f in files])
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("serve")
    model = save_model_dir(flat_model(size=32, seed=3), root / "model")
    files = photos(root / "photos")
    result = runner.invoke(app, ["export", "--model", model, "--output", str(root / "serving")])
    assert result.exit_code == 0, result.output
    assert "Exported version 1" in result.output
    return {"root": root, "model": model, "serving": root / "serving", "files": files}


# ----------------------------------------------------------------------------- export


def test_plain_tensorflow_answers_serving_default_on_jpeg_bytes_like_predict(served):
    version = served["serving"] / "v0001" / "1"
    assert (version / "saved_model.pb").is_file()
    script = textwrap.dedent(
        """
        import json, sys
        import tensorflow as tf
        loaded = tf.saved_model.load(sys.argv[1])
        names = sys.argv[2:]
        data = [open(name, "rb").read() for name in names]
        out = loaded.signatures["serving_default"](image_bytes=tf.constant(data))
        assert not [m for m in sys.modules if m.startswith("catsdogs")], "project code imported"
        print(json.dumps({"p": out["p_dog"].numpy().tolist(),
                          "label": [x.decode() for x in out["label"].numpy()]}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-I", "-c", script, str(version), *map(str, served["files"])],
        capture_output=True,
        text=True,
        env=env,
        cwd=served["root"],
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    expected = predicted(served["model"], served["files"])
    for file, p, label in zip(served["files"], answer["p"], answer["label"], strict=True):
        assert p == pytest.approx(expected[file.name], abs=1e-4), file.name
        assert label == ("dog" if expected[file.name] >= 0.5 else "cat")


def test_export_is_idempotent_and_never_overwrites_a_version(served, tmp_path):
    serving = tmp_path / "serving"
    shutil.copytree(served["serving"], serving)  # the module's copy stays at version 1
    again = export.export(served["model"], str(serving))
    assert (again.version, again.created) == (1, False)
    other = save_model_dir(nested_model(size=32), tmp_path / "other")
    with pytest.raises(OutputConflictError, match=r"--version 2"):
        export.export(other, str(serving), version=1)
    assert export.export(other, str(serving)).version == 2  # the next free one
    with pytest.raises(SettingsError):
        export.export(other, str(serving), version=0)


def test_export_numbers_the_version_after_the_champion(served, tmp_path):
    champion = tmp_path / "champion"
    save_model_dir(flat_model(size=32, seed=3), champion / "versions" / "v0007")
    (champion / "champion.json").write_text(json.dumps({"version": 7, "path": "versions/v0007"}))
    result = export.export(str(champion), str(tmp_path / "serving"))
    assert result.version == 7
    assert (tmp_path / "serving" / "v0007" / "1" / "saved_model.pb").is_file()
    from_folder = export.export(str(champion / "versions" / "v0007"), str(tmp_path / "serving"))
    assert (from_folder.version, from_folder.created) == (7, False)
    record = json.loads((tmp_path / "serving" / "v0007" / "1" / export.RECORD_FILE).read_text())
    assert record["classes"] == ["cat", "dog"] and record["image_size"] == [32, 32]


def test_export_that_disagrees_with_predict_is_refused_and_writes_nothing(
    served, tmp_path, monkeypatch
):
    real_resize = signatures.resize
    monkeypatch.setattr(signatures, "resize", lambda image, size: real_resize(image, size) + 9.0)
    with pytest.raises(ModelError, match="catsdogs predict"):
        export.export(served["model"], str(tmp_path / "serving"))
    assert not (tmp_path / "serving").exists() or not list((tmp_path / "serving").iterdir())


def test_export_needs_a_fixed_input_size(tmp_path):
    import keras

    inputs = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(pooled))
    with pytest.raises(ModelError, match="fixed"):
        export.export(save_model_dir(model, tmp_path / "m"), str(tmp_path / "serving"))


@pytest.mark.gcs
def test_export_to_gcs_writes_the_version_and_reexports_as_a_noop(served, bucket):
    first = export.export(served["model"], f"{bucket}/serving")
    assert first.uri == f"{bucket}/serving/v0001" and first.created
    names = storage.list_files(f"{bucket}/serving/v0001/1")
    assert {"saved_model.pb", export.RECORD_FILE, "variables/variables.index"} <= set(names)
    assert not export.export(served["model"], f"{bucket}/serving").created


@pytest.mark.parametrize("orientation", range(1, 9))
def test_graph_decode_orients_and_decodes_like_pillow(orientation):
    import tensorflow as tf
    from PIL import Image

    pixels = np.random.default_rng(orientation).integers(0, 256, (20, 33, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    encoded = {}
    for fmt, picture, options in (
        ("JPEG", Image.fromarray(pixels), {"exif": exif}),
        ("PNG", Image.fromarray(np.dstack([pixels, pixels[..., 0]])), {}),
        ("PNG", Image.fromarray(pixels[..., 1]), {}),
    ):
        buffer = io.BytesIO()
        picture.save(buffer, format=fmt, **options)
        encoded[f"{fmt}-{picture.mode}"] = buffer.getvalue()
    for name, data in encoded.items():
        got = signatures.decode(tf.constant(data)).numpy()
        np.testing.assert_array_equal(got, images.decode(data, name), err_msg=name)


# ----------------------------------------------------------------------------- serve


def _post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def server(served):
    port = _free_port()
    log = open(served["root"] / "server.log", "w")  # noqa: SIM115 - closed below
    argv = ["catsdogs", "serve", "--model", str(served["serving"]), "--port", str(port)]
    code = f"import sys; sys.argv = {argv!r}; from catsdogs.cli.serve import app; app(sys.argv[1:])"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log.close()
            pytest.fail(
                f"server did not start: {(served['root'] / 'server.log').read_text()[-3000:]}"
            )
        time.sleep(0.5)
    yield {"url": url, "log": served["root"] / "server.log"}
    process.terminate()
    process.wait(timeout=30)
    log.close()


def test_server_answers_v1_and_v2_for_real_photos_like_predict(served, server):
    expected = predicted(served["model"], served["files"])
    blobs = [base64.b64encode(f.read_bytes()).decode() for f in served["files"]]
    status, v1 = _post(
        f"{server['url']}/v1/models/catsdogs:predict",
        json.dumps({"instances": [{"b64": b} for b in blobs]}).encode(),
    )
    assert status == 200, v1
    for file, answer in zip(served["files"], v1["predictions"], strict=True):
        assert answer["p_dog"] == pytest.approx(expected[file.name], abs=1e-4)
        assert answer["label"] == ("dog" if expected[file.name] >= 0.5 else "cat")
    body = {
        "inputs": [
            {"name": "image_bytes", "shape": [len(blobs)], "datatype": "BYTES", "data": blobs}
        ]
    }
    status, v2 = _post(f"{server['url']}/v2/models/catsdogs/infer", json.dumps(body).encode())
    assert status == 200, v2
    outputs = {o["name"]: o for o in v2["outputs"]}
    assert outputs["p_dog"]["data"] == pytest.approx(
        [expected[f.name] for f in served["files"]], abs=1e-4
    )
    pixels = images.resize(images.load(str(served["files"][0])), (32, 32)).astype(np.float32)
    body = {
        "inputs": [
            {
                "name": "pixels",
                "shape": [1, 32, 32, 3],
                "datatype": "FP32",
                "data": pixels.ravel().tolist(),
            }
        ]
    }
    status, v2 = _post(f"{server['url']}/v2/models/catsdogs/infer", json.dumps(body).encode())
    assert status == 200, v2
    assert v2["outputs"][0]["data"][0] == pytest.approx(expected[served["files"][0].name], abs=1e-4)


def _png_header(width: int, height: int) -> bytes:
    """A tiny PNG file that claims ``width`` x ``height`` pixels (a pixel bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 100)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_server_refuses_bad_requests_with_4xx_and_keeps_serving(served, server, tmp_path):
    predict_url = f"{server['url']}/v1/models/catsdogs:predict"
    text = tmp_path / "notes.jpg"
    text.write_text("this is a text file, not a photo\n")

    def instances(*blobs: bytes) -> bytes:
        return json.dumps(
            {"instances": [{"b64": base64.b64encode(b).decode()} for b in blobs]}
        ).encode()

    status, answer = _post(predict_url, instances(text.read_bytes()))
    assert status == 400 and "not an image" in answer["error"]
    good = served["files"][0].read_bytes()
    status, answer = _post(predict_url, instances(good))
    assert status == 200 and len(answer["predictions"]) == 1
    assert _post(predict_url, b'{"instances": [')[0] == 400  # not JSON
    assert _post(predict_url, b'{"images": []}')[0] == 400  # wrong shape of JSON
    assert _post(predict_url, b'{"instances": [{"b64": "%%%"}]}')[0] == 400  # not base64
    for side in (8_000, 60_000):  # over our limit; over Pillow's bomb limit
        status, answer = _post(predict_url, instances(_png_header(side, side)))
        assert status == 413 and "pixel" in str(answer), answer
    status, answer = _post(predict_url, instances(good[: len(good) // 2]))  # truncated JPEG
    assert status == 400 and "decoded" in answer["error"]
    status, answer = _post(predict_url, instances(b"\xff\xd8" + b"\0" * (17 * 1024 * 1024)))
    assert status == 413 and "limit" in str(answer)
    assert _post(predict_url, instances(good))[0] == 200  # still serving
    for path in ("/v2/health/live", "/v2/health/ready", "/v1/models/catsdogs"):
        with urllib.request.urlopen(server["url"] + path, timeout=10) as response:
            assert response.status == 200, path
    log = server["log"].read_text()
    assert "POST /v1/models/catsdogs:predict -> 400, 0 images" in log
    assert "POST /v1/models/catsdogs:predict -> 200, 1 images" in log


# ----------------------------------------------------------------------------- deploy


def test_deploy_dry_run_prints_an_inference_service():
    result = runner.invoke(
        app,
        [
            "deploy", "--serving-uri", "gs://b/serving/catsdogs", "--version", "3", "--name",
            "catsdogs", "--namespace", "ml", "--service-account", "kserve-gcs",
            "--canary-traffic-percent", "10", "--gpus", "1", "--predictor", "tensorflow-serving",
            "--dry-run",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    body = yaml.safe_load(result.output)
    assert body["apiVersion"] == "serving.kserve.io/v1beta1" and body["kind"] == "InferenceService"
    assert body["metadata"] == {
        "name": "catsdogs",
        "namespace": "ml",
        "labels": {"app.kubernetes.io/managed-by": "catsdogs"},
    }
    predictor = body["spec"]["predictor"]
    assert predictor["serviceAccountName"] == "kserve-gcs"
    assert predictor["canaryTrafficPercent"] == 10
    assert predictor["model"]["modelFormat"] == {"name": "tensorflow"}
    assert predictor["model"]["storageUri"] == "gs://b/serving/catsdogs/v0003"
    assert predictor["model"]["runtimeVersion"] == f"{deploy.TF_SERVING_VERSION}-gpu"
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    cpu_only = deploy.manifest(deploy.DeploySettings("catsdogs", "gs://b/s/v0001", namespace="ml"))
    limits = cpu_only["spec"]["predictor"]["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in limits
    assert "canaryTrafficPercent" not in cpu_only["spec"]["predictor"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "Cats_Dogs"}, "DNS label"),
        ({"storage_uri": "/tmp/serving/v0001"}, "storage the cluster can read"),
        ({"storage_uri": "gs://b/serving"}, "one exported version"),
        ({"canary_traffic_percent": 101}, "canary"),
        ({"memory": "lots"}, "quantity"),
    ],
)
def test_deploy_settings_name_the_bad_value(options, message):
    values = {"name": "catsdogs", "storage_uri": "gs://b/s/v0001"} | options
    with pytest.raises(SettingsError, match=message):
        deploy.DeploySettings(**values)


def test_deploy_applies_server_side_and_a_rerun_is_idempotent():
    with RecordingServer() as k8s:
        settings = deploy.DeploySettings("catsdogs", "gs://b/serving/v0001", namespace="ml")
        client = deploy.api_client(k8s.url, "secret-token")
        first = deploy.apply(deploy.manifest(settings), client)
        again = deploy.apply(deploy.manifest(settings), client)
        canary = dataclasses.replace(settings, canary_traffic_percent=20)
        third = deploy.apply(deploy.manifest(canary), client)
    assert [c.status for c in k8s.state.calls] == [201, 200, 200]
    assert first["metadata"]["uid"] == again["metadata"]["uid"] == third["metadata"]["uid"]
    assert [r["metadata"]["generation"] for r in (first, again, third)] == [1, 1, 2]
    for call in k8s.state.calls:
        assert call.method == "PATCH"
        assert (
            call.path == "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/catsdogs"
        )
        assert call.content_type == "application/apply-patch+yaml"
        assert call.query == {"fieldManager": "catsdogs", "force": "true"}
        assert call.authorization == "Bearer secret-token"
    assert k8s.state.objects[("ml", "catsdogs")]["spec"]["predictor"]["canaryTrafficPercent"] == 20


def test_deploy_cli_reports_the_applied_object_and_api_errors():
    with RecordingServer() as k8s:
        args = ["deploy", "--serving-uri", "gs://b/s/v0001", "--namespace", "ml", "--host", k8s.url]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["applied"] == "ml/catsdogs"
        body = deploy.manifest(deploy.DeploySettings("catsdogs", "gs://b/s/v0001", namespace="ml"))
        body["kind"] = "Deployment"  # the API answers 400
        with pytest.raises(deploy.DeployError, match="400"):
            deploy.apply(body, deploy.api_client(k8s.url))


def test_pipeline_step_defaults_match_the_deploy_settings():
    import inspect

    from catsdogs.components.serve.component import export_and_deploy

    parameters = inspect.signature(export_and_deploy.python_func).parameters
    defaults = deploy.DeploySettings("catsdogs", "gs://b/s/v0001")
    for name in (
        "name",
        "predictor",
        "image",
        "namespace",
        "service_account",
        "gpus",
        "runtime_version",
        "cpu",
        "memory",
    ):
        assert parameters[name].default == getattr(defaults, name), name
    assert parameters["canary_traffic_percent"].default == -1  # -1: None (KFP has no Optional int)


@pytest.mark.gcs
def test_pipeline_step_exports_the_champion_and_applies(served, bucket, tmp_path, capsys):
    from catsdogs.components.serve.component import export_and_deploy

    champion = tmp_path / "champion"
    save_model_dir(flat_model(size=32, seed=3), champion / "versions" / "v0002")
    (champion / "champion.json").write_text(json.dumps({"version": 2, "path": "versions/v0002"}))
    uri = export_and_deploy.python_func(
        champion_uri=str(champion), serving_uri=f"{bucket}/serving", namespace="ml", dry_run=True
    )
    assert uri == f"{bucket}/serving/v0002"
    assert storage.exists(f"{bucket}/serving/v0002/1/saved_model.pb")
    body = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert deploy.storage_uri_of(body) == f"{bucket}/serving/v0002"
    assert body["spec"]["predictor"]["serviceAccountName"] == "catsdogs-predictor"
