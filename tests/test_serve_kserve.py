"""A promotion on a KServe-like path: the applied storageUri, downloaded by KServe's own storage
initializer code, served by the predictor command of the manifest, answering V1 and V2.

KServe's injector (kserve v0.20.0 ``pkg/webhook/admission/pod/storage_initializer_injector.go``)
runs the storage initializer with ``storageUri /mnt/models`` and the predictor reads
``/mnt/models``; the initializer's entrypoint is ``Storage.download_files(uris, paths)`` of the
``kserve-storage`` package (``python/storage-initializer/scripts/initializer-entrypoint``). This
test does the same with the real package against fake-gcs-server, into a folder laid out like
``/mnt/models``, then starts the manifest's container command (only the mount path, host and
port replaced: the test listens on 127.0.0.1) and compares the answers with ``catsdogs predict``.
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.request
from pathlib import Path

import pytest
from catsdogs.components.common import storage
from catsdogs.components.serve import deploy, export
from catsdogs.components.serve.component import export_and_deploy

from tests.conftest import _free_port
from tests.serve_process import running
from tests.tiny_models import flat_model, save_model_dir, write_jpeg

pytestmark = pytest.mark.gcs


def promote(champion: Path, version: int, seed: int) -> str:
    """Make ``versions/vNNNN`` of a new model the champion (as promote leaves it)."""
    folder = champion / "versions" / f"v{version:04d}"
    save_model_dir(flat_model(size=32, seed=seed, bias=0.3 * version), folder)
    (champion / "champion.json").write_text(
        json.dumps({"version": version, "path": f"versions/v{version:04d}"})
    )
    return str(folder)


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory, gcs_server: str) -> dict:
    """Two promotions in a row, each exported and deployed by the pipeline's step (dry run)."""
    from catsdogs.components.common import gcs

    gcs.client().create_bucket("kserve-path")
    root = tmp_path_factory.mktemp("kserve")
    serving = "gs://kserve-path/serving"
    manifests, models = [], []
    for version in (1, 2):
        models.append(promote(root / "champion", version, seed=version))
        printed = _capture(
            lambda: export_and_deploy.python_func(
                champion_uri=str(root / "champion"), serving_uri=serving, dry_run=True
            )
        )
        manifests.append(json.loads(printed.strip().splitlines()[-1]))
    return {"root": root, "serving": serving, "manifests": manifests, "models": models}


def _capture(call) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        call()
    return out.getvalue()


def test_each_promotion_applies_its_own_storage_uri(promoted: dict) -> None:
    first, second = promoted["manifests"]
    assert deploy.storage_uri_of(first) == f"{promoted['serving']}/v0001"
    assert deploy.storage_uri_of(second) == f"{promoted['serving']}/v0002"
    assert first["spec"] != second["spec"]  # a new spec: KServe rolls out a new revision
    container = second["spec"]["predictor"]["containers"][0]
    assert container["name"] == "kserve-container" and container["command"][:2] == [
        "catsdogs",
        "serve",
    ]
    assert second["spec"]["predictor"]["serviceAccountName"] == deploy.DEFAULT_SERVICE_ACCOUNT


@pytest.fixture(scope="module")
def mounted(promoted: dict) -> Path:
    from kserve_storage import Storage

    mount = promoted["root"] / "mnt" / "models"
    uri = deploy.storage_uri_of(promoted["manifests"][1])
    Storage.download_files([uri], [str(mount)])
    for path in mount.rglob("*"):  # KServe mounts /mnt/models read-only
        path.chmod(path.stat().st_mode & ~0o222)
    return mount


def test_the_download_holds_only_the_applied_version(promoted: dict, mounted: Path) -> None:
    files = sorted(str(p.relative_to(mounted)) for p in mounted.rglob("*") if p.is_file())
    assert "1/saved_model.pb" in files and all(f.startswith("1/") for f in files), files
    record = json.loads((mounted / "1" / export.RECORD_FILE).read_text())
    second_model = Path(promoted["models"][1]) / "model.keras"
    assert record["model_sha256"] == export.file_sha256(second_model)
    everything = storage.list_files(promoted["serving"])
    assert any(n.startswith("v0001/") for n in everything)  # the first version is still there


def test_manifest_command_serves_the_download_like_predict(
    promoted: dict, mounted: Path, tmp_path: Path
) -> None:
    from catsdogs.components.predict import core as predictor

    container = promoted["manifests"][1]["spec"]["predictor"]["containers"][0]
    port = _free_port()
    replaced = {deploy.MODEL_MOUNT: str(mounted), "0.0.0.0": "127.0.0.1"}
    command = [replaced.get(arg, arg) for arg in container["command"]]
    command[command.index("--port") + 1] = str(port)
    command[0] = str(Path(sys.executable).with_name(command[0]))  # the venv's catsdogs
    env = {e["name"]: replaced.get(e["value"], e["value"]) for e in container["env"]}
    env["STORAGE_URI"] = str(mounted)  # the injector rewrites it to /mnt/models
    photos = [write_jpeg(tmp_path / f"p{i}.jpg", size=40 + 9 * i, seed=i) for i in range(3)]
    expected = [
        p.positive for p in predictor.predict(promoted["models"][1], [str(p) for p in photos])
    ]
    blobs = [base64.b64encode(p.read_bytes()).decode() for p in photos]
    with running(command, port, tmp_path / "predictor.log", env=env) as server:
        v1 = _post(
            f"{server['url']}/v1/models/catsdogs:predict",
            {"instances": [{"b64": b} for b in blobs]},
        )
        v2 = _post(
            f"{server['url']}/v2/models/catsdogs/infer",
            {"inputs": [{"name": "image_bytes", "datatype": "BYTES", "shape": [3], "data": blobs}]},
        )
    assert [a["p_dog"] for a in v1["predictions"]] == pytest.approx(expected, abs=1e-4)
    outputs = {o["name"]: o["data"] for o in v2["outputs"]}
    assert outputs["p_dog"] == pytest.approx(expected, abs=1e-4)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())
