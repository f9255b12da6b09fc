"""A tampered dataset is refused before use, with a message that says what does not agree.

Covers shard names that point outside the dataset (local and gs://), changed classes, edited
counts and shard lists, ``shards`` of the wrong type, and a truncated shard whose manifest was
edited to match it.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from catsdogs.components.common import errors, records, storage, tfrecord

from tests.conftest import make_tiny_dataset


def _dataset(folder: Path) -> Path:
    return Path(make_tiny_dataset(folder, per_class=2, size=16))


def _edit(folder: Path, change: Callable[[dict[str, Any]], object]) -> None:
    uri = folder / records.MANIFEST
    data = json.loads(uri.read_text())
    change(data)
    uri.write_text(json.dumps(data))


def _escape_to(target: Path) -> str:
    """A shard name that, joined to any folder, lands on ``target``."""
    return "../" * 24 + str(target).lstrip("/")


@pytest.mark.parametrize(
    "name", ["ESCAPE", "/etc/passwd", "sub/train-00000-of-00001.tfrecord", ".."]
)
def test_shard_names_that_are_not_plain_file_names_are_refused(tmp_path: Path, name: str) -> None:
    folder = _dataset(tmp_path / "data")
    evil = tmp_path / "EVIL.tfrecord"
    name = _escape_to(evil) if name == "ESCAPE" else name
    _edit(folder, lambda m: m["splits"]["train"]["shards"][0].update(file=name))
    with pytest.raises(errors.DatasetError, match="not a plain file name"):
        with records.local_dataset(folder, ("train",)):
            pass
    assert not evil.exists()


def test_a_remote_manifest_cannot_make_a_download_land_outside_its_folder(
    tmp_path: Path, remote_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = remote_bucket  # gs:// and s3://
    temp = tmp_path / "a" / "b" / "c" / "d"
    temp.mkdir(parents=True)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    local = _dataset(tmp_path / "data")
    storage.upload_dir(local, f"{bucket}/data")
    name = "../../../EVIL.tfrecord"  # from the download folder in TMPDIR: still below tmp_path
    shard = (local / "train-00000-of-00001.tfrecord").read_bytes()
    storage.write_bytes(f"{bucket}/data/{name}", shard)
    data = json.loads((local / records.MANIFEST).read_text())
    data["splits"]["train"]["shards"][0].update(file=name)
    storage.write_text(f"{bucket}/data/{records.MANIFEST}", json.dumps(data))
    with pytest.raises(errors.DatasetError, match=r"splits\.train\.shards\[0\]\.file.*not a plain"):
        with records.local_dataset(f"{bucket}/data", ("train",)):
            pass
    assert not list(tmp_path.rglob("EVIL.tfrecord"))


@pytest.mark.parametrize(
    "classes", [["dog", "cat"], ["cat", "dog", "bird"], ["cat"], ["Cat", "Dog"]]
)
def test_changed_classes_are_refused(tmp_path: Path, classes: list[str]) -> None:
    folder = _dataset(tmp_path / "data")
    _edit(folder, lambda m: m.update(classes=classes))
    expected = f"classes are {classes}, expected ['cat', 'dog'] in that order"
    with pytest.raises(errors.DatasetError, match=re.escape(expected)):
        records.load_manifest(folder)


def _bump_count(m: dict[str, Any]) -> None:
    m["splits"]["train"]["count"] += 1


def _bump_count_and_class(m: dict[str, Any]) -> None:
    m["splits"]["train"]["count"] += 1
    m["splits"]["train"]["per_class"]["cat"] += 1


def _duplicate_shard(m: dict[str, Any]) -> None:
    train = m["splits"]["train"]
    train["shards"] = train["shards"] * 2
    train["count"] *= 2
    train["per_class"] = {k: v * 2 for k, v in train["per_class"].items()}


def _rename_class_count(m: dict[str, Any]) -> None:
    m["splits"]["val"]["per_class"] = {"cat": 2, "bird": 2}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_bump_count, "splits.train does not add up: count is 5 but per_class adds up to 4"),
        (_bump_count_and_class, "splits.train does not add up: count is 5 but its shards hold 4"),
        (_rename_class_count, "splits.val does not add up: per_class names ['bird', 'cat']"),
        (
            _duplicate_shard,
            "field 'splits.train.shards[0].file' is 'train-00000-of-00001.tfrecord', expected "
            "'train-00000-of-00002.tfrecord'",
        ),
        (
            lambda m: m["splits"]["test"].update(shards="test-00000-of-00001.tfrecord"),
            "field 'splits.test.shards' must be a list",
        ),
    ],
)
def test_a_manifest_whose_counts_or_shard_list_were_edited_is_refused(
    tmp_path: Path, change: Callable[[dict[str, Any]], None], message: str
) -> None:
    folder = _dataset(tmp_path / "data")
    _edit(folder, change)
    with pytest.raises(errors.DatasetError, match=re.escape(message)):
        records.load_manifest(folder)


def test_a_truncated_shard_with_a_matching_manifest_is_refused(tmp_path: Path) -> None:
    folder = _dataset(tmp_path / "data")
    shard = folder / "train-00000-of-00001.tfrecord"
    shard.write_bytes(shard.read_bytes()[:-100])
    digest = hashlib.sha256(shard.read_bytes()).hexdigest()
    _edit(
        folder,
        lambda m: m["splits"]["train"]["shards"][0].update(
            size=shard.stat().st_size, sha256=digest
        ),
    )
    with pytest.raises(errors.DatasetError, match="ends in the middle of a record, but manifest"):
        with records.local_dataset(folder, ("train",)):
            pass


def test_a_shard_holding_other_records_than_its_manifest_lists_is_refused(tmp_path: Path) -> None:
    folder = _dataset(tmp_path / "data")

    def fewer(m: dict[str, Any]) -> None:
        train = m["splits"]["train"]
        train["count"] -= 1
        train["per_class"]["cat"] -= 1
        train["shards"][0]["count"] -= 1

    _edit(folder, fewer)
    with pytest.raises(errors.DatasetError, match="holds 4 records, but manifest.json lists 3"):
        with records.local_dataset(folder, ("train",)):
            pass


def test_the_untouched_dataset_still_loads(tmp_path: Path) -> None:
    folder = _dataset(tmp_path / "data")
    with records.local_dataset(folder) as (_, manifest):
        assert manifest.classes == records.CLASSES
        assert [
            tfrecord.count_records(folder / s.file) for s in manifest.splits["train"].shards
        ] == [4]
