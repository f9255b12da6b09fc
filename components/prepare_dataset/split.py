"""The deterministic, stratified split into train, val and test.

Per class, the valid images are ordered by ``sha256(seed, relative name)``, so the split does not
depend on the order files are listed in.
"""

from __future__ import annotations

import hashlib

from catsdogs.components.common.errors import SourceError
from catsdogs.components.common.records import CLASSES, SPLITS
from catsdogs.components.prepare_dataset.settings import PrepareSettings


def split_key(seed: int, name: str) -> str:
    """The order key of one image within its class: independent of listing order."""
    return hashlib.sha256(f"{seed}\n{name}".encode()).hexdigest()


def split_sizes(cfg: PrepareSettings, available: dict[str, int], source: str) -> dict[str, int]:
    """Per ``class/split``, how many images go there.

    Raises:
        SourceError: A class has too few images for the requested counts or fractions.
    """
    sizes: dict[str, dict[str, int]] = {}
    for cls in CLASSES:
        n = available[cls]
        if cfg.use_fractions:
            val = round(n * cfg.val_fraction)
            test = round(n * cfg.test_fraction)
            wanted = {"train": n - val - test, "val": val, "test": test}
            if min(wanted.values()) < 1:
                raise SourceError(
                    f"Too few images under {source} for the requested fractions: {cls} has {n} "
                    f"valid images, which gives train/val/test = {wanted['train']}/{wanted['val']}"
                    f"/{wanted['test']}. Use larger fractions or add images."
                )
        else:
            wanted = {
                "train": cfg.train_per_class,
                "val": cfg.val_per_class,
                "test": cfg.test_per_class,
            }
            need = sum(wanted.values())
            if n < need:
                raise SourceError(
                    f"Too few images under {source}: {cls} has {n} valid images, but train/val/"
                    f"test per class = {wanted['train']}+{wanted['val']}+{wanted['test']} = "
                    f"{need}. Pass smaller --train-per-class/--val-per-class/--test-per-class. To "
                    "split all images instead, pass --val-fraction 0.2 --test-fraction 0.2."
                )
        sizes[cls] = wanted
    return {f"{cls}/{split}": sizes[cls][split] for cls in CLASSES for split in SPLITS}


def assign_splits(
    items: list[tuple[str, int]], cfg: PrepareSettings, source: str
) -> dict[str, list[tuple[str, int]]]:
    """Stratified, deterministic split of ``(name, label)`` items into train/val/test.

    Each split lists its items ordered by ``split_key`` (a seeded shuffle), whatever order
    ``items`` came in.
    """
    by_class = {
        cls: sorted(
            (it for it in items if it[1] == index), key=lambda it: split_key(cfg.seed, it[0])
        )
        for index, cls in enumerate(CLASSES)
    }
    sizes = split_sizes(cfg, {cls: len(v) for cls, v in by_class.items()}, source)
    out: dict[str, list[tuple[str, int]]] = {split: [] for split in SPLITS}
    for cls, ordered in by_class.items():
        start = 0
        for split in SPLITS:
            end = start + sizes[f"{cls}/{split}"]
            out[split].extend(ordered[start:end])
            start = end
    for split in SPLITS:
        out[split].sort(key=lambda it: split_key(cfg.seed, it[0]))
    return out


def per_class(items: list[tuple[str, int]]) -> dict[str, int]:
    """How many of the ``(name, label)`` items each class has."""
    return {cls: sum(1 for _, label in items if label == i) for i, cls in enumerate(CLASSES)}
