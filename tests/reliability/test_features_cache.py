"""The features cache of train-transfer: checked against its checksums and the dataset on reuse.

A truncated or wrong-shaped ``<split>.npz`` used to crash every later run (it was never
recomputed), and flipped labels in it were reused silently.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from catsdogs.components.common import records
from catsdogs.components.train_transfer import features
from catsdogs.components.train_transfer.settings import TransferSettings

from tests.conftest import make_tiny_dataset

SETTINGS = TransferSettings(backbone="vgg16", weights="none", image_size=(32, 32), batch_size=4)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_tiny_dataset(tmp_path_factory.mktemp("features") / "data", per_class=3, size=32)


class _Run:
    """compute_features with a tiny extractor that counts how often it is built."""

    def __init__(self, data: str, cache: str) -> None:
        self.data, self.cache, self.built, self.lines = data, cache, 0, []
        self.manifest = records.load_manifest(data)
        self.key = {"format": features.FEATURES_FORMAT, "backbone": "vgg16", "test": 1}

    def extractor(self):
        import keras

        self.built += 1
        inputs = keras.Input((32, 32, 3))
        return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))

    def __call__(self) -> dict:
        return features.compute_features(
            self.data, self.extractor, SETTINGS, self.key, [self.cache], self.lines.append
        )

    @property
    def folder(self) -> Path:
        return Path(features.key_folder(self.cache, self.key))


def _rewrite(run: _Run, split: str, fix_checksum: bool, **arrays: np.ndarray) -> None:
    """Replace ``<split>.npz``; with ``fix_checksum`` also its sha256 in features.json."""
    path = run.folder / f"{split}.npz"
    np.savez(path.with_suffix(""), **arrays)  # np.savez adds .npz
    if fix_checksum:
        meta_path = run.folder / features.FEATURES_FILE
        meta = json.loads(meta_path.read_text())
        meta["splits"][split]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        meta_path.write_text(json.dumps(meta))


def _train(run: _Run) -> tuple[np.ndarray, np.ndarray]:
    with np.load(run.folder / "train.npz") as arrays:
        return arrays["features"], arrays["labels"]


def _tamperings(run: _Run) -> dict:
    good_x, good_y = _train(run)
    one_flipped = good_y.copy()
    one_flipped[0] = 1 - one_flipped[0]
    return {
        "truncated": lambda: (run.folder / "train.npz").write_bytes(
            (run.folder / "train.npz").read_bytes()[:200]
        ),
        "wrong shape, checksum rewritten": lambda: _rewrite(
            run, "train", True, features=good_x[:, :2], labels=good_y
        ),
        "all labels flipped": lambda: _rewrite(
            run, "train", False, features=good_x, labels=1 - good_y
        ),
        "one label flipped, checksum rewritten": lambda: _rewrite(
            run, "train", True, features=good_x, labels=one_flipped
        ),
    }


CASES = [
    "truncated",
    "wrong shape, checksum rewritten",
    "all labels flipped",
    "one label flipped, checksum rewritten",
]


@pytest.fixture(scope="module")
def cached(dataset: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    """A good cache (computed once) and the features it holds; it is reused as it is."""
    cache = str(tmp_path_factory.mktemp("good") / "cache")
    run = _Run(dataset, cache)
    computed = run()
    assert run() and run.built == 1, "an intact cache is reused"
    return cache, computed


def test_the_cache_records_checksums_and_images_per_class(cached: tuple[str, dict]) -> None:
    (meta_path,) = Path(cached[0]).glob(f"*/{features.FEATURES_FILE}")
    train = json.loads(meta_path.read_text())["splits"]["train"]
    assert train["per_class"] == {"cat": 3, "dog": 3} and len(train["sha256"]) == 64


@pytest.mark.parametrize("case", CASES)
def test_a_damaged_cache_is_recomputed_not_reused(
    dataset: str, cached: tuple[str, dict], tmp_path: Path, case: str
) -> None:
    good_cache, first = cached
    shutil.copytree(good_cache, tmp_path / "cache")
    run = _Run(dataset, str(tmp_path / "cache"))
    good_y = _train(run)[1]
    _tamperings(run)[case]()
    second = run()  # no crash, no silent reuse
    assert run.built == 1, run.lines
    assert any("do not match" in line for line in run.lines), run.lines
    for split in first:
        np.testing.assert_array_equal(second[split][1], first[split][1])
        np.testing.assert_allclose(second[split][0], first[split][0], rtol=1e-6)
    again = run()  # the rewritten cache is good again: reused
    assert run.built == 1
    np.testing.assert_array_equal(again["train"][1], good_y)
