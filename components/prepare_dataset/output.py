"""The output folder: reuse a finished dataset, refuse a foreign one, write the shards.

What an unfinished run leaves (shards, ``quality_report.md``, the in-flight temporary files of
``storage.temp_path``) is "ours": it never blocks a rerun, which removes it before writing.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from catsdogs.components.common import records, storage, tempdirs
from catsdogs.components.common.errors import OutputConflictError, SettingsError
from catsdogs.components.prepare_dataset.report import REPORT
from catsdogs.components.prepare_dataset.validation import Outcome

SHARD_TARGET_BYTES = 100 * 1024 * 1024
_SHARD_NAME = re.compile(r"(train|val|test)-\d{5}-of-\d{5}\.tfrecord")
_TEMP_NAME = re.compile(r"\.(?P<name>.+)\.tmp-[0-9a-f]+")  # storage.temp_path of a file


def check_output(output: str) -> None:
    """Refuse an output that is empty, blank, a gs:// or s3:// URI without a bucket, or a file.

    Raises:
        SettingsError: ``output`` is empty or names no bucket.
        OutputConflictError: ``output`` (or a folder above it) is an existing file.
    """
    if not output.strip():
        raise SettingsError(
            f"The output location is empty ({output!r}). Pass --output a folder or "
            "gs://bucket/prefix (or s3://bucket/prefix) to write the dataset to."
        )
    if storage.names_no_bucket(output):
        scheme = output.split("://")[0]
        raise SettingsError(
            f"--output {output!r} names no bucket; expected {scheme}://bucket/prefix."
        )
    storage.check_folder(output, "--output")
    storage.check_reachable(output)  # credentials and bucket, before a download or any decoding


def existing_dataset(
    output: str, fingerprint: str, settings: dict[str, Any]
) -> records.Manifest | None:
    """The manifest of ``output`` when it already holds this exact dataset; None when it is new.

    Raises:
        OutputConflictError: ``output`` holds a dataset from another source or settings, or
            files that are not part of a prepared dataset.
    """
    if storage.exists(storage.join(output, records.MANIFEST)):
        manifest = records.load_manifest(output)
        if manifest.source_fingerprint == fingerprint and manifest.settings == settings:
            return manifest
        old = manifest.settings or {}
        changes = [
            f"{key}={old.get(key)} (now {settings.get(key)})"
            for key in sorted(set(old) | set(settings))
            if old.get(key) != settings.get(key)
        ]
        if manifest.source_fingerprint != fingerprint:
            changes.insert(0, f"source {manifest.source or '?'} as it was then")
        raise OutputConflictError(
            f"Refusing to overwrite {output}: it holds a dataset prepared with different inputs "
            f"({'; '.join(changes)}). Choose another --output or delete the old dataset first."
        )
    foreign = [n for n in _listing(output) if not _is_ours(n)]
    if foreign:
        raise OutputConflictError(
            f"Refusing to write into {output}: it already holds files that are not part of a "
            f"prepared dataset (first: {', '.join(foreign[:3])}). Choose an empty --output."
        )
    return None


def is_complete(output: str, manifest: records.Manifest) -> bool:
    """Whether every shard the manifest lists is present with its recorded size."""
    for split in records.SPLITS:
        for shard in manifest.splits[split].shards:
            try:
                if storage.stat(storage.join(output, shard.file)).size != shard.size:
                    return False
            except FileNotFoundError:
                return False
    return True


def clear_leftovers(output: str) -> None:
    """Delete what an earlier, unfinished run left in ``output``: the manifest first, then the rest.

    Locally that includes the temporary files of writes that were cut short (listings skip them).
    """
    if storage.exists(storage.join(output, records.MANIFEST)):
        storage.delete(storage.join(output, records.MANIFEST))
    for name in _listing(output):
        if _is_ours(name):
            storage.delete(storage.join(output, name))
    if not storage.is_remote(output) and Path(output).is_dir():
        for path in Path(output).iterdir():
            temp = _TEMP_NAME.fullmatch(path.name)
            if temp and (_is_ours(temp["name"]) or temp["name"] == records.MANIFEST):
                path.unlink(missing_ok=True)


@contextlib.contextmanager
def output_folder(output: str) -> Iterator[Path]:
    """The local folder to write the dataset into; for gs:// / s3:// it is uploaded when done."""
    if not storage.is_remote(output):
        Path(output).mkdir(parents=True, exist_ok=True)
        yield Path(output)
        return
    with tempdirs.temporary("out") as folder:
        yield folder
        storage.upload_dir(folder, output)


def write_shards(
    folder: Path, split: str, items: list[tuple[str, int]], outcomes: dict[str, Outcome]
) -> tuple[records.Shard, ...]:
    """Write the spooled JPEGs of ``items`` as about ``SHARD_TARGET_BYTES`` large shards."""
    total = sum(outcomes[name].nbytes for name, _ in items)
    count = max(1, math.ceil(total / SHARD_TARGET_BYTES))
    shards = []
    for index in range(count):
        part = items[index * len(items) // count : (index + 1) * len(items) // count]
        batch = [(outcomes[name].read(), label, name) for name, label in part]
        shards.append(records.write_shard(folder / records.shard_name(split, index, count), batch))
    return tuple(shards)


def _listing(output: str) -> list[str]:
    return storage.list_files(output) if storage.is_remote(output) or Path(output).is_dir() else []


def _is_ours(name: str) -> bool:
    return name == REPORT or _SHARD_NAME.fullmatch(name) is not None
