"""The TFRecord shards of a prepared dataset, and ``Dataset``: a manifest opened once with its shards.

Layout of a prepared dataset folder (local, gs:// or s3://), written by prepare_dataset:

    train-00000-of-00002.tfrecord ...   tf.train.Example records (``records.FEATURES``)
    val-00000-of-00001.tfrecord ...
    test-00000-of-00001.tfrecord ...
    quality_report.md
    manifest.json                       written last: a folder without it is not a dataset

A step opens the dataset once (``Dataset.open``: one read of ``manifest.json``) and passes the
``Dataset`` down; ``Dataset.local(splits)`` gives the same dataset with a local folder whose shards
of ``splits`` were checked against the manifest (size, sha256 and record count, in one read of each).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from catsdogs.components.common import storage, tempdirs, tfrecord
from catsdogs.components.common.errors import DatasetError
from catsdogs.components.common.manifest import MANIFEST, SPLITS, Manifest, Shard, load_manifest

_AGAIN = "Run `catsdogs prepare` again."


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a local file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_shards(dataset_dir: Path, manifest: Manifest, splits: tuple[str, ...]) -> None:
    """Check each shard of ``splits`` exists with the size, sha256 and record count listed.

    Each shard is read once: its sha256 and its record count come from the same pass.
    """
    for split in splits:
        for shard in manifest.splits[split].shards:
            path = dataset_dir / shard.file
            if not path.is_file():
                raise DatasetError(
                    f"Shard {shard.file} listed in the manifest is missing from {dataset_dir}. "
                    "The dataset is incomplete: run `catsdogs prepare` again."
                )
            if path.stat().st_size != shard.size:
                sha256, held = "", None
            else:
                sha256, held = tfrecord.digest_and_count(path)
            if sha256 != shard.sha256:
                raise DatasetError(
                    f"Shard {shard.file} in {dataset_dir} does not match the checksum in "
                    f"{MANIFEST} (expected sha256 {shard.sha256[:12]}..., size {shard.size}). "
                    "The file is corrupt or was changed: run `catsdogs prepare` again."
                )
            if held != shard.count:
                found = (
                    "ends in the middle of a record" if held is None else f"holds {held} records"
                )
                raise DatasetError(
                    f"Shard {shard.file} in {dataset_dir} {found}, but {MANIFEST} lists "
                    f"{shard.count}: the shard is truncated or the manifest was edited. {_AGAIN}"
                )


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A prepared dataset opened once: where it is, its manifest and, once fetched, its shards.

    Attributes:
        uri: The dataset as given (local folder, gs:// or s3:// prefix).
        manifest: Its ``manifest.json``, read once.
        folder: A local folder holding the verified shards of ``verified`` (None until ``local``).
        verified: The splits whose shards ``folder`` holds, checked against the manifest.
    """

    uri: str
    manifest: Manifest
    folder: Path | None = None
    verified: tuple[str, ...] = ()

    @classmethod
    def open(cls, uri: str | Path) -> Dataset:
        """Read ``manifest.json`` of ``uri`` (the one read of it for the step)."""
        return cls(str(uri), load_manifest(uri))

    def identity(self, splits: tuple[str, ...] | None = None) -> str:
        """The identity of the records of ``splits`` (``Manifest.identity``)."""
        return self.manifest.identity(splits)

    @contextlib.contextmanager
    def local(self, splits: tuple[str, ...] = SPLITS) -> Iterator[Dataset]:
        """This dataset with a local folder whose shards of ``splits`` are verified.

        A local dataset is checked in place; a remote one is downloaded to a temporary folder
        (removed on exit). The manifest is not read again.

        Raises:
            DatasetError: A split is missing, or a shard is missing, corrupt or truncated.
        """
        with self._fetched(splits) as folder:
            yield dataclasses.replace(self, folder=folder, verified=splits)

    @contextlib.contextmanager
    def _fetched(self, splits: tuple[str, ...]) -> Iterator[Path]:
        for split in splits:
            if split not in self.manifest.splits:
                raise DatasetError(
                    f"{self.uri} has no {split!r} split (has: {list(self.manifest.splits)})."
                )
        if not storage.is_remote(self.uri):
            verify_shards(Path(self.uri), self.manifest, splits)
            yield Path(self.uri)
            return
        with tempdirs.temporary("data") as tmp:
            for split in splits:
                for shard in self.manifest.splits[split].shards:
                    storage.download_file(storage.join(self.uri, shard.file), tmp / shard.file)
            verify_shards(tmp, self.manifest, splits)
            yield tmp

    def shard_paths(self, split: str) -> list[str]:
        """Local paths of the shards of one verified split, in manifest order."""
        if self.folder is None or split not in self.verified:
            raise DatasetError(
                f"The {split!r} split of {self.uri} was not fetched and verified "
                f"(verified: {list(self.verified)}); open it with Dataset.local first."
            )
        return [str(self.folder / shard.file) for shard in self.manifest.splits[split].shards]


@contextlib.contextmanager
def local_dataset(
    dataset: str | Path | Dataset, splits: tuple[str, ...] = SPLITS
) -> Iterator[tuple[Path, Manifest]]:
    """``Dataset.local`` as ``(folder, manifest)``; a ``Dataset`` given is not read again."""
    opened = dataset if isinstance(dataset, Dataset) else Dataset.open(dataset)
    with opened._fetched(splits) as folder:
        yield folder, opened.manifest


def write_shard(path: Path, items: list[tuple[bytes, int, str]]) -> Shard:
    """Write ``(jpeg_bytes, label, id)`` records to one TFRecord file; returns its manifest entry.

    The file is written under ``storage.temp_path`` and renamed into place when complete (the temp
    file is removed when writing fails, e.g. on a full disk). The same records give the same bytes.
    """
    tmp = storage.temp_path(path)
    try:
        with open(tmp, "wb") as handle:
            for image, label, ident in items:
                handle.write(tfrecord.frame(tfrecord.example(image, label, ident)))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return Shard(path.name, len(items), path.stat().st_size, sha256_file(path))
