"""The storage layer through a fault-injecting proxy: nothing lost, nothing half-written.

A lost response to a conditional write (create-only or compare-and-swap) must not be taken for a
conflict, a real conflict must still be refused, and random 503/429/resets must not change what
ends up stored. Every test runs on both backends (``backend``: fake-gcs-server, then moto's S3).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from catsdogs.components.common import storage

from tests.reliability.fault_proxy import FaultProxy, conditional_write, storage_through


def test_lost_response_of_a_create_only_write_is_not_a_conflict(
    backend: tuple[str, str], tmp_path: Path
) -> None:
    bucket, server = backend
    local = tmp_path / "file.bin"
    local.write_bytes(b"uploaded")
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"a")
    (folder / "sub" / "b.bin").write_bytes(b"b")
    with storage_through(FaultProxy(server, lose_response=conditional_write)) as proxy:
        storage.write_text(f"{bucket}/created.txt", "mine", if_absent=True)
        storage.upload_file(local, f"{bucket}/uploaded.bin", if_absent=True)
        storage.upload_dir(folder, f"{bucket}/dir", if_absent=True)
        assert len(proxy.lost) == 4, proxy.lost  # each write's first response was lost
    assert storage.read_text(f"{bucket}/created.txt") == "mine"
    assert storage.read_bytes(f"{bucket}/uploaded.bin") == b"uploaded"
    assert storage.list_files(f"{bucket}/dir") == ["a.bin", "sub/b.bin"]


def test_lost_response_of_a_compare_and_swap_is_not_a_conflict(
    backend: tuple[str, str],
) -> None:
    bucket, server = backend
    uri = f"{bucket}/pointer.json"
    storage.write_text(uri, "v1")
    generation = storage.stat(uri).generation
    with storage_through(FaultProxy(server, lose_response=conditional_write)) as proxy:
        storage.write_text(uri, "v2", if_generation_match=generation)
        assert len(proxy.lost) == 1
    assert storage.read_text(uri) == "v2"


def test_real_conflicts_are_still_refused_when_responses_are_lost(
    backend: tuple[str, str], tmp_path: Path
) -> None:
    bucket, server = backend
    uri = f"{bucket}/taken.txt"
    storage.write_text(uri, "theirs")
    stale = storage.stat(uri).generation
    storage.write_text(uri, "theirs, again")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "taken.txt").write_text("mine")
    with storage_through(FaultProxy(server, lose_response=conditional_write)) as proxy:
        with pytest.raises(storage.AlreadyExistsError, match="Refusing to overwrite"):
            storage.write_text(uri, "mine", if_absent=True)
        with pytest.raises(storage.PreconditionFailedError):
            storage.write_text(uri, "mine", if_generation_match=stale)
        with pytest.raises(storage.AlreadyExistsError, match="taken.txt already exist"):
            storage.upload_dir(tmp_path / "dir", bucket, if_absent=True)
        assert proxy.lost  # the refusals came through the lost-response path
    assert storage.read_text(uri) == "theirs, again"


def test_random_503_429_and_resets_lose_nothing(backend: tuple[str, str], tmp_path: Path) -> None:
    bucket, server = backend
    payloads = {f"obj{i}.bin": os.urandom(500 + i) for i in range(8)}
    src = tmp_path / "src"
    src.mkdir()
    for name, data in payloads.items():
        (src / name).write_bytes(data)
    with storage_through(FaultProxy(server, rate=0.15, seed=11)) as proxy:
        for name, data in payloads.items():
            storage.write_bytes(f"{bucket}/single/{name}", data, if_absent=True)
        storage.upload_dir(src, f"{bucket}/many", if_absent=True)
        storage.write_text(f"{bucket}/counter", "0", if_absent=True)
        for value in range(1, 4):  # a compare-and-swap chain
            generation = storage.stat(f"{bucket}/counter").generation
            storage.write_text(f"{bucket}/counter", str(value), if_generation_match=generation)
        storage.download_dir(f"{bucket}/many", tmp_path / "back")
        listed = storage.list_files(bucket)
        read = {n: storage.read_bytes(f"{bucket}/single/{n}") for n in payloads}
        injected = proxy.counts["503"] + proxy.counts["429"] + proxy.counts["reset"]
    assert injected >= 3, proxy.counts  # the faults really happened
    assert read == payloads
    expected = [f"many/{n}" for n in payloads] + [f"single/{n}" for n in payloads]
    assert listed == sorted([*expected, "counter"])  # nothing extra, nothing missing
    assert storage.read_text(f"{bucket}/counter") == "3"
    for name, data in payloads.items():
        assert (tmp_path / "back" / name).read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "back").iterdir()) == sorted(payloads)


@pytest.mark.s3
def test_lost_answer_of_a_multipart_completion_is_not_a_conflict(
    s3_server: str, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catsdogs.components.common import s3

    monkeypatch.setattr(s3, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(s3, "PART_SIZE", 5 * 1024 * 1024)
    payload = os.urandom(6 * 1024 * 1024)
    (tmp_path / "big.bin").write_bytes(payload)
    with storage_through(FaultProxy(s3_server, lose_response=conditional_write)) as proxy:
        storage.upload_file(tmp_path / "big.bin", f"{s3_bucket}/big.bin", if_absent=True)
        assert [line.split(" ")[0] for line in proxy.lost] == ["POST"], proxy.lost  # the completion
        with pytest.raises(storage.AlreadyExistsError):
            storage.upload_file(tmp_path / "big.bin", f"{s3_bucket}/big.bin", if_absent=True)
    assert storage.read_bytes(f"{s3_bucket}/big.bin") == payload


@pytest.mark.s3
def test_an_s3_store_that_keeps_failing_is_one_clear_error(
    s3_server: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.write_text(f"{s3_bucket}/x.txt", "x")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # botocore's own setting: two tries, then give up
    for seed in range(4):  # each seed ends on another fault: 503, 429 or a reset
        with storage_through(FaultProxy(s3_server, rate=1.0, seed=seed)) as proxy:
            with pytest.raises(storage.StorageError, match=r"s3://.*/x\.txt: ") as caught:
                storage.read_bytes(f"{s3_bucket}/x.txt")
        assert sum(proxy.counts.values()) == 2, proxy.counts  # the retry really happened
        assert len(str(caught.value).splitlines()) == 1


@pytest.mark.s3
def test_an_s3_endpoint_that_accepts_no_connection_fails_at_once_in_every_call(
    s3_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket
    import time

    from catsdogs.components.common import errors, s3

    with socket.socket() as sock:  # a port nothing listens on: connections are refused
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", dead)
    s3.reset_client()
    try:
        started = time.monotonic()
        with pytest.raises(
            errors.CredentialsError, match="s3://b/after: nothing answers"
        ) as caught:
            storage.write_text("s3://b/after", "lost?")
        assert f"AWS_ENDPOINT_URL={dead}" in str(caught.value)
        with pytest.raises(errors.CredentialsError, match="s3://b/prefix: nothing answers"):
            storage.list_files("s3://b/prefix")
        assert time.monotonic() - started < 15  # not botocore's minutes of retries
    finally:
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
        s3.reset_client()
