"""KServe's storage initializer reads our s3:// SERVING_URI with the Secret docs/storage.md tells users to make.

kserve-storage 0.21.0 cannot be installed beside this project's pins (it requires
google-cloud-storage 2.x), so the code that decides the download is ported, step by step:

- the controller turns the Secret into the initializer's environment: kserve/kserve
  ``pkg/credentials/s3/s3_secret.go`` ``BuildSecretEnvs`` (``AWS_ACCESS_KEY_ID`` and
  ``AWS_SECRET_ACCESS_KEY`` from the Secret's keys of those names, the ``inferenceservice-config``
  default) and ``pkg/credentials/s3/utils.go`` ``BuildS3EnvVars`` (``serving.kserve.io/s3-endpoint``
  becomes ``AWS_ENDPOINT_URL=https://<endpoint>``, ``http://`` when ``serving.kserve.io/s3-usehttps``
  is ``"0"``; ``serving.kserve.io/s3-region`` becomes ``AWS_DEFAULT_REGION``);
- the initializer (kserve-storage 0.21.0, ``kserve_storage/kserve_storage.py``):
  ``Storage.get_S3_config`` / ``_get_s3_client_kwargs`` (boto3 with ``AWS_ENDPOINT_URL``, standard
  retries, 3 attempts; path-style, which botocore forces for an explicit endpoint: botocore
  ``args.py``) and ``_download_s3`` (every object under the storageUri's prefix except keys ending
  in ``/`` and empty objects, to its path relative to the prefix).
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

import pytest
import yaml
from catsdogs.components.common import storage
from catsdogs.components.serve import deploy

DOCS = Path(__file__).resolve().parents[1] / "docs" / "storage.md"
pytestmark = pytest.mark.s3


def _documented_secret_and_account() -> tuple[dict, dict]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), flags=re.S)
    (block,) = [b for b in blocks if "kind: Secret" in b]
    secret, account = yaml.safe_load_all(block)
    return secret, account


def _initializer_env(secret: dict) -> dict[str, str]:
    """BuildSecretEnvs + BuildS3EnvVars (the annotations this Secret uses)."""
    annotations, data = secret["metadata"]["annotations"], secret["stringData"]
    env = {name: data[name] for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    endpoint = annotations["serving.kserve.io/s3-endpoint"]
    https = annotations.get("serving.kserve.io/s3-usehttps")
    env["AWS_ENDPOINT_URL"] = ("http://" if https == "0" else "https://") + endpoint
    if "serving.kserve.io/s3-region" in annotations:
        env["AWS_DEFAULT_REGION"] = annotations["serving.kserve.io/s3-region"]
    return env


def _initializer_download(storage_uri: str, env: dict[str, str], target: Path) -> list[str]:
    """_download_s3 with get_S3_config's client: what lands in the model folder."""
    import boto3
    from botocore.client import Config

    config = Config(
        connect_timeout=15, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"}
    )
    s3 = boto3.resource(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env.get("AWS_DEFAULT_REGION"),
        config=config,
    )
    parsed = urllib.parse.urlparse(storage_uri)
    bucket_name, prefix = parsed.netloc, parsed.path.lstrip("/")
    s3.meta.client.head_bucket(Bucket=bucket_name)
    downloaded = []
    for obj in s3.Bucket(bucket_name).objects.filter(Prefix=prefix):
        if obj.key.endswith("/") or obj.size == 0:
            continue
        name = obj.key.removeprefix(prefix).lstrip("/")
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        s3.Bucket(bucket_name).download_file(obj.key, str(target / name))
        downloaded.append(name)
    return sorted(downloaded)


def test_kserve_reads_the_s3_serving_uri_with_the_documented_secret(
    s3_server: str, s3_bucket: str, tmp_path: Path
) -> None:
    # The layout export writes (a real export, and that none of its files is empty, which the
    # initializer would skip: tests/test_object_storage_cli.py); two versions, as after two
    # promotions.
    serving = f"{s3_bucket}/serving/catsdogs"
    for version in (1, 2):  # SERVING_URI/vNNNN/1/ (components/serve/export.py)
        folder = tmp_path / "export" / f"v{version:04d}" / "1"
        for name in ("saved_model.pb", "fingerprint.pb", "variables/variables.index"):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(f"{version}:{name}".encode())
    storage.upload_dir(tmp_path / "export", serving, if_absent=True)
    secret, account = _documented_secret_and_account()
    assert account["kind"] == "ServiceAccount"
    assert account["secrets"] == [{"name": secret["metadata"]["name"]}]
    # In the cluster the endpoint is MinIO's service; here it is moto's server.
    secret["metadata"]["annotations"]["serving.kserve.io/s3-endpoint"] = s3_server.removeprefix(
        "http://"
    )
    env = _initializer_env(secret)
    assert env["AWS_ENDPOINT_URL"] == s3_server  # s3-usehttps "0": plain http, as MinIO in-cluster
    settings = deploy.DeploySettings(
        name="catsdogs",
        storage_uri=f"{serving}/v0002",
        service_account=account["metadata"]["name"],
    )
    body = deploy.manifest(settings)
    assert body["spec"]["predictor"]["serviceAccountName"] == "kserve-s3"
    storage_uri = deploy.storage_uri_of(body)
    assert storage_uri == f"{serving}/v0002"
    downloaded = _initializer_download(storage_uri, env, tmp_path / "mnt-models")
    assert downloaded == storage.list_files(f"{serving}/v0002")  # one version only
    for name in downloaded:  # the predictor loads /mnt/models/1
        assert (tmp_path / "mnt-models" / name).read_bytes() == (
            tmp_path / "export" / "v0002" / name
        ).read_bytes()
