"""The storage layer, locally and against the real fake-gcs-server and moto's S3 server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from catsdogs.components.common import storage


def test_local_write_is_atomic_and_create_only(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.txt"
    storage.write_text(target, "one")
    assert target.read_text() == "one"
    storage.write_text(target, "two")
    assert target.read_text() == "two"
    with pytest.raises(storage.AlreadyExistsError, match="Refusing to overwrite"):
        storage.write_text(target, "three", if_absent=True)
    assert target.read_text() == "two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.txt"]  # no temp files left


def test_check_folder_refuses_a_file_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    storage.check_folder(tmp_path / "new" / "deeper", "--output")  # may not exist yet
    storage.check_folder(tmp_path, "--output")
    storage.check_folder("gs://bucket/file", "--output")
    storage.check_folder("s3://bucket/file", "--output")
    for uri in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(storage.OutputConflictError, match=r"--output .* is not a folder"):
            storage.check_folder(uri, "--output")


def test_local_upload_download_dir(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "x.bin").write_bytes(b"x" * 10)
    (src / "sub" / "y.bin").write_bytes(b"y")
    storage.upload_dir(src, str(tmp_path / "dst"))
    assert storage.list_files(tmp_path / "dst") == ["sub/y.bin", "x.bin"]


def test_remote_roundtrip(remote_bucket: str, tmp_path: Path) -> None:
    bucket = remote_bucket
    uri = f"{bucket}/run/obj.txt"
    assert not storage.exists(uri)
    storage.write_text(uri, "hello")
    assert storage.exists(uri)
    assert storage.read_text(uri) == "hello"
    info = storage.stat(uri)
    assert info.size == 5 and info.generation
    with pytest.raises(storage.AlreadyExistsError):
        storage.write_text(uri, "other", if_absent=True)
    assert storage.read_text(uri) == "hello"
    storage.write_text(uri, "v2", if_generation_match=info.generation)
    with pytest.raises(storage.PreconditionFailedError):
        storage.write_text(uri, "v3", if_generation_match=info.generation)
    assert storage.read_text(uri) == "v2"


def test_remote_folders_parallel_and_verified(remote_bucket: str, tmp_path: Path) -> None:
    bucket = remote_bucket
    src = tmp_path / "src"
    (src / "deep" / "er").mkdir(parents=True)
    payloads = {f"f{i}.bin": os.urandom(1000 + i) for i in range(20)}
    payloads["deep/er/z.bin"] = os.urandom(300_000)
    for name, data in payloads.items():
        (src / name).write_bytes(data)
    storage.upload_dir(src, f"{bucket}/prefix")
    assert storage.list_files(f"{bucket}/prefix") == sorted(payloads)
    assert storage.is_dir(f"{bucket}/prefix") and not storage.is_dir(f"{bucket}/nothing")
    dst = tmp_path / "dst"
    storage.download_dir(f"{bucket}/prefix", dst)
    for name, data in payloads.items():
        assert (dst / name).read_bytes() == data
    assert sorted(p.name for p in dst.iterdir() if p.name.startswith(".")) == []
    with pytest.raises(storage.AlreadyExistsError):
        storage.upload_dir(src, f"{bucket}/prefix", if_absent=True)


def test_remote_missing_bucket_is_fast_and_clear(backend: tuple[str, str]) -> None:
    import time

    scheme = backend[0].split("://")[0]
    missing = f"{scheme}://no-such-bucket"
    start = time.monotonic()
    with pytest.raises(storage.StorageError, match=f"bucket {missing} does not exist"):
        storage.read_bytes(f"{missing}/x.txt")
    with pytest.raises(storage.StorageError, match="does not exist"):
        storage.list_files(f"{missing}/prefix")
    with pytest.raises(storage.StorageError, match="does not exist"):
        storage.write_text(f"{missing}/x.txt", "x")
    with pytest.raises(storage.StorageError, match="does not exist"):
        storage.exists(f"{missing}/x.txt")
    assert time.monotonic() - start < 10


def test_remote_missing_object(remote_bucket: str) -> None:
    with pytest.raises(FileNotFoundError, match="no such object"):
        storage.read_bytes(f"{remote_bucket}/missing.txt")
    with pytest.raises(FileNotFoundError):
        storage.stat(f"{remote_bucket}/missing.txt")
    assert not storage.exists(f"{remote_bucket}/missing.txt")
    storage.delete(f"{remote_bucket}/missing.txt")  # missing is not an error


@pytest.mark.s3
def test_s3_large_files_go_up_in_parts_create_only(
    s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catsdogs.components.common import s3

    monkeypatch.setattr(s3, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(s3, "PART_SIZE", 5 * 1024 * 1024)  # S3's smallest part
    local = tmp_path / "big.bin"
    payload = os.urandom(11 * 1024 * 1024)
    local.write_bytes(payload)
    uri = f"{s3_bucket}/big/big.bin"
    storage.upload_file(local, uri, if_absent=True)
    info = storage.stat(uri)
    assert info.size == len(payload) and str(info.generation).endswith('-3"')  # three parts
    with pytest.raises(storage.AlreadyExistsError, match="Refusing to overwrite"):
        storage.upload_file(local, uri, if_absent=True)
    storage.download_file(uri, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == payload
    bucket, _ = storage.split_remote(uri)
    assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
