"""The storage layer through a fault-injecting proxy: nothing lost, nothing half-written.

A lost response to a conditional write (create-only or compare-and-swap) must not be taken for a
conflict, a real conflict must still be refused, and random 503/429/resets must not change what
ends up stored.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from catsdogs.components.common import storage

from tests.reliability.fault_proxy import FaultProxy, conditional_write, storage_through

pytestmark = pytest.mark.gcs


def test_lost_response_of_a_create_only_write_is_not_a_conflict(
    gcs_server: str, bucket: str, tmp_path: Path
) -> None:
    local = tmp_path / "file.bin"
    local.write_bytes(b"uploaded")
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"a")
    (folder / "sub" / "b.bin").write_bytes(b"b")
    with storage_through(FaultProxy(gcs_server, lose_response=conditional_write)) as proxy:
        storage.write_text(f"{bucket}/created.txt", "mine", if_absent=True)
        storage.upload_file(local, f"{bucket}/uploaded.bin", if_absent=True)
        storage.upload_dir(folder, f"{bucket}/dir", if_absent=True)
        assert len(proxy.lost) == 4, proxy.lost  # each write's first response was lost
    assert storage.read_text(f"{bucket}/created.txt") == "mine"
    assert storage.read_bytes(f"{bucket}/uploaded.bin") == b"uploaded"
    assert storage.list_files(f"{bucket}/dir") == ["a.bin", "sub/b.bin"]


def test_lost_response_of_a_compare_and_swap_is_not_a_conflict(
    gcs_server: str, bucket: str
) -> None:
    uri = f"{bucket}/pointer.json"
    storage.write_text(uri, "v1")
    generation = storage.stat(uri).generation
    with storage_through(FaultProxy(gcs_server, lose_response=conditional_write)) as proxy:
        storage.write_text(uri, "v2", if_generation_match=generation)
        assert len(proxy.lost) == 1
    assert storage.read_text(uri) == "v2"


def test_real_conflicts_are_still_refused_when_responses_are_lost(
    gcs_server: str, bucket: str, tmp_path: Path
) -> None:
    uri = f"{bucket}/taken.txt"
    storage.write_text(uri, "theirs")
    stale = storage.stat(uri).generation
    storage.write_text(uri, "theirs, again")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "taken.txt").write_text("mine")
    with storage_through(FaultProxy(gcs_server, lose_response=conditional_write)) as proxy:
        with pytest.raises(storage.AlreadyExistsError, match="Refusing to overwrite"):
            storage.write_text(uri, "mine", if_absent=True)
        with pytest.raises(storage.PreconditionFailedError):
            storage.write_text(uri, "mine", if_generation_match=stale)
        with pytest.raises(storage.AlreadyExistsError, match="taken.txt already exist"):
            storage.upload_dir(tmp_path / "dir", bucket, if_absent=True)
        assert proxy.lost  # the refusals came through the lost-response path
    assert storage.read_text(uri) == "theirs, again"


def test_random_503_429_and_resets_lose_nothing(
    gcs_server: str, bucket: str, tmp_path: Path
) -> None:
    payloads = {f"obj{i}.bin": os.urandom(500 + i) for i in range(8)}
    src = tmp_path / "src"
    src.mkdir()
    for name, data in payloads.items():
        (src / name).write_bytes(data)
    with storage_through(FaultProxy(gcs_server, rate=0.15, seed=11)) as proxy:
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
