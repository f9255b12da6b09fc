"""The datasets of the accuracy table: the book's split and the "new data" batch of train-6000.

``../shared/data/dogs-vs-cats/train-6000`` holds ids 0-2999 of each class. The book trains on ids
0-999, validates on 1000-1499 and tests on 1500-1999; ids 2000-2999 are a "new data arrived"
batch that no split uses. ``book_dataset`` prepares ids 0-1999 with 1000/500/500 per class (the
book's 4,000 photos; prepare assigns them to splits by its seeded hash, not by id range), and
``new_data_dataset`` writes ids 2000-2999 as a test-only dataset (2,000 photos, a second and
independent test set). Both are written once, into the cache.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

BOOK_IDS = range(0, 2000)
NEW_DATA_IDS = range(2000, 3000)
_NAME = re.compile(r"(cat|dog)\.(\d+)\.jpg")


def linked_source(source: Path, ids: range, folder: Path) -> Path:
    """A folder with the ``cat.<id>.jpg``/``dog.<id>.jpg`` photos of ``ids`` (hard links, or copies).

    Not symbolic links: prepare does not follow them out of its source folder.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for cls in ("cat", "dog"):
        for ident in ids:
            target = source / f"{cls}.{ident}.jpg"
            if not target.is_file():
                raise SystemExit(f"Error: {target} is missing; expected train-6000 at {source}.")
            link = folder / target.name
            if not link.is_file():
                try:
                    os.link(target, link)
                except OSError:  # another file system
                    shutil.copyfile(target, link)
    return folder


def book_dataset(source: Path, cache: Path) -> str:
    """The book's split: ids 0-1999 prepared with 1000/500/500 per class (once, into ``cache``)."""
    output = cache / "book"
    if not (output / "manifest.json").is_file():
        from catsdogs.components.prepare_dataset import core
        from catsdogs.components.prepare_dataset.settings import PrepareSettings

        linked = linked_source(source, BOOK_IDS, cache / "book-src")
        core.prepare(str(linked), str(output), PrepareSettings(), progress=False)
    return str(output)


def new_data_dataset(source: Path, cache: Path, ids: range = NEW_DATA_IDS) -> str:
    """Ids 2000-2999 (``ids``) of each class as a dataset with only a ``test`` split (once).

    The photos go through prepare's own validation and encoding (``validate_image``), so they
    are stored as the book's split is.
    """
    from catsdogs.components.common import records
    from catsdogs.components.prepare_dataset.settings import PrepareSettings
    from catsdogs.components.prepare_dataset.validation import validate_image

    output = cache / "new-data"
    if (output / "manifest.json").is_file():
        return str(output)
    linked = linked_source(source, ids, cache / "new-data-src")
    cfg = PrepareSettings()
    items = []
    for path in sorted(linked.iterdir()):
        match = _NAME.fullmatch(path.name)
        if match is None:
            continue
        outcome, data = validate_image(str(path), cfg.max_side, cfg.jpeg_quality)
        if not outcome.ok:
            raise SystemExit(f"Error: {path} is not a valid photo ({outcome.reason}).")
        items.append((data, records.CLASSES.index(match.group(1)), path.name))
    output.mkdir(parents=True, exist_ok=True)
    shard = records.write_shard(output / records.shard_name("test", 0, 1), items)
    per_class = {
        cls: sum(1 for _, label, _ in items if label == i) for i, cls in enumerate(records.CLASSES)
    }
    split = records.Split(count=len(items), per_class=per_class, shards=(shard,))
    manifest = records.Manifest(
        classes=records.CLASSES,
        splits={"test": split},
        quarantined=(),
        seed=cfg.seed,
        source_fingerprint=f"train-6000 ids {ids.start}-{ids.stop - 1}",
        source=str(source),
    )
    records.write_manifest(str(output), manifest)
    return str(output)
