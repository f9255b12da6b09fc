"""prepare_dataset: sources, validation and quarantine, safe extraction, split, output, CLI, wrapper."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import inspect
import io
import json
import os
import random
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from catsdogs.cli import data as cli
from catsdogs.cli.app import app
from catsdogs.components.common import errors, records, storage, tfrecord
from catsdogs.components.prepare_dataset import archives, core, sources, validation
from PIL import Image
from typer.testing import CliRunner

from tests.conftest import TRAIN_6000

SMALL = core.PrepareSettings(train_per_class=3, val_per_class=1, test_per_class=1, workers=1)


# ------------------------------------------------------------------------------ helpers


def _synthetic_jpeg(seed: int, size: tuple[int, int] = (48, 36), **save: object) -> bytes:
    rng = random.Random(seed)
    image = Image.new("RGB", size, (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    image.putpixel((1, 1), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, **save)
    return buffer.getvalue()


def _photo(cls: str, index: int) -> bytes:
    """A real photo from ../shared when present, else a tiny synthetic JPEG."""
    real = TRAIN_6000 / f"{cls}.{index}.jpg"
    if real.exists():
        return real.read_bytes()
    return _synthetic_jpeg(hash((cls, index)) % 10_000)


def _kaggle(folder: Path, per_class: int = 5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for cls in records.CLASSES:
        for i in range(per_class):
            (folder / f"{cls}.{i}.jpg").write_bytes(_photo(cls, i))
    return folder


def _petimages(folder: Path, per_class: int = 5) -> Path:
    """Microsoft's layout, nested one level and with mixed case: <root>/PetImages/Cat, .../dog."""
    for cls, sub in (("cat", "Cat"), ("dog", "dog")):
        target = folder / "kagglecatsanddogs" / "PetImages" / sub
        target.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (target / f"{i}.jpg").write_bytes(_photo(cls, i))
    (folder / "kagglecatsanddogs" / "readme[1].txt").write_text("Microsoft PetImages")
    return folder


def _bomb_jpeg() -> bytes:
    """A small valid JPEG whose header claims 20000x20000 pixels."""
    data = bytearray(_synthetic_jpeg(7))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (20000).to_bytes(2, "big") + (20000).to_bytes(2, "big")
    return bytes(data)


def _bad_inputs(folder: Path) -> dict[str, str | None]:
    """Write every bad input into ``folder``; returns name -> expected reason prefix (None: valid)."""
    full = _photo("cat", 10)
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buffer, "PNG")
    (folder / "dog.png_named.jpg").write_bytes(buffer.getvalue())
    buffer = io.BytesIO()
    Image.new("CMYK", (40, 30), (0, 128, 255, 0)).save(buffer, "JPEG")
    (folder / "cat.cmyk.jpg").write_bytes(buffer.getvalue())
    buffer = io.BytesIO()
    Image.new("L", (40, 30), 128).save(buffer, "JPEG")
    (folder / "dog.gray.jpg").write_bytes(buffer.getvalue())
    (folder / "cat.empty.jpg").write_bytes(b"")
    (folder / "dog.truncated.jpg").write_bytes(full[: len(full) // 2])
    (folder / "cat.text.jpg").write_text("this is not an image\n")
    (folder / "dog.bomb.jpg").write_bytes(_bomb_jpeg())
    (folder / "notes.txt").write_text("ignored: no image suffix")
    return {
        "dog.png_named.jpg": None,
        "cat.cmyk.jpg": None,
        "dog.gray.jpg": None,
        "cat.empty.jpg": "empty file (0 bytes)",
        "dog.truncated.jpg": "cannot decode: image file is truncated",
        "cat.text.jpg": "not an image",
        "dog.bomb.jpg": "decompression bomb: header declares 20000x20000",
    }


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def _splits(output: str | Path) -> str:
    return json.dumps(records.load_manifest(output).to_dict()["splits"], sort_keys=True)


def _ids(output: Path, split: str) -> list[tuple[bytes, int, tuple[int, ...]]]:
    with records.local_dataset(str(output), (split,)) as (folder, manifest):
        dataset = records.read_split(folder, manifest, split, None, with_ids=True)
        return [(i.numpy(), int(lb), tuple(im.shape)) for im, lb, i in dataset]


# ------------------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_per_class": 0}, "train_per_class must be at least 1, got 0"),
        ({"val_fraction": 1.5}, "val_fraction must be in [0, 1), got 1.5"),
        ({"val_fraction": 0.2}, "must both be above 0"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "must be below 1"),
        ({"max_side": 8}, "max_side must be in [32, 4096] pixels, got 8"),
        ({"workers": -1}, "workers must be 0 (all cores) or more, got -1"),
        ({"sha256": "abc"}, "sha256 must be 64 hex digits, got 'abc'"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(
        ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        core.PrepareSettings(**kwargs)  # type: ignore[arg-type]


def test_defaults_equal_across_dataclass_cli_and_wrapper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catsdogs.components.prepare_dataset.component import prepare_dataset

    defaults = core.PrepareSettings()
    params = inspect.signature(prepare_dataset.python_func).parameters
    for field in dataclasses.fields(core.PrepareSettings):
        if field.name in params:
            assert params[field.name].default == getattr(defaults, field.name), field.name
    assert {"train_per_class", "val_fraction", "seed"} <= set(params)

    seen: dict[str, object] = {}

    def fake_prepare(source: str, output: str, cfg: core.PrepareSettings) -> core.PrepareResult:
        seen.update(source=source, cfg=cfg)
        return core.PrepareResult(output, "m", "fp", {"train": 1, "val": 1, "test": 1}, 0, "")

    monkeypatch.setattr(core, "prepare", fake_prepare)
    result = CliRunner().invoke(app, ["prepare", "--output", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert seen["cfg"] == defaults
    assert seen["source"] == sources.DEFAULT_SOURCE == cli.DEFAULT_SOURCE


# ------------------------------------------------------------------------------ validation


def test_bad_inputs_are_quarantined_and_good_ones_kept(tmp_path: Path) -> None:
    source = _kaggle(tmp_path / "src", per_class=5)
    expected = _bad_inputs(source)
    before = _tree(tmp_path)
    cfg = core.PrepareSettings(val_fraction=0.2, test_fraction=0.2, workers=2)
    result = core.prepare(str(source), str(tmp_path / "out"), cfg, progress=False)

    manifest = records.load_manifest(tmp_path / "out")
    reasons = {q.file: q.reason for q in manifest.quarantined}
    bad = {name: prefix for name, prefix in expected.items() if prefix}
    assert set(reasons) == set(bad)
    for name, prefix in bad.items():
        assert reasons[name].startswith(prefix), (name, reasons[name])
    good = {p.name for p in source.glob("*.jpg")} - set(bad)
    stored = {i.decode() for split in records.SPLITS for i, _, _ in _ids(tmp_path / "out", split)}
    assert stored == good
    assert sum(result.counts.values()) == len(good) and result.quarantined == len(bad)
    assert _tree(tmp_path) - before == {"out"} | {
        f"out/{n}" for n in storage.list_files(tmp_path / "out")
    }
    report = (tmp_path / "out" / core.REPORT).read_text()
    assert "dog.bomb.jpg" in report and "Quarantined (4)" in report


def test_records_are_rgb_oriented_and_downscaled(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    (source / "cat.rotated.jpg").write_bytes(_synthetic_jpeg(1, (48, 32), exif=exif.tobytes()))
    (source / "dog.large.jpg").write_bytes(_synthetic_jpeg(2, (600, 400)))
    (source / "dog.mid.jpg").write_bytes(_synthetic_jpeg(3, (90, 60)))
    for i in range(3):
        (source / f"cat.{i}.jpg").write_bytes(_synthetic_jpeg(10 + i))
        (source / f"dog.{i}.jpg").write_bytes(_synthetic_jpeg(20 + i))
    cfg = core.PrepareSettings(val_fraction=0.25, test_fraction=0.25, max_side=64, workers=1)
    core.prepare(str(source), str(tmp_path / "out"), cfg, progress=False)
    shapes = {
        i.decode(): (label, shape)
        for split in records.SPLITS
        for i, label, shape in _ids(tmp_path / "out", split)
    }
    assert shapes["cat.rotated.jpg"] == (0, (48, 32, 3))  # EXIF applied: portrait now
    label, (height, width, channels) = shapes["dog.large.jpg"]
    assert label == 1 and channels == 3 and 0.9 * 64 <= max(height, width) <= 64
    assert shapes["dog.mid.jpg"] == (1, (43, 64, 3))  # resampled, aspect ratio kept
    assert shapes["cat.0.jpg"] == (0, (36, 48, 3))  # small images are not enlarged


def test_validate_image_reasons_without_encoding(tmp_path: Path) -> None:
    expected = _bad_inputs(tmp_path)
    for name, prefix in expected.items():
        outcome, data = validation.validate_image(str(tmp_path / name), 256, 95, encode=False)
        assert data == b"" and outcome.ok == (prefix is None), name
        assert outcome.reason.startswith(prefix or ""), (name, outcome.reason)
    big = tmp_path / "big.jpg"
    big.write_bytes(_synthetic_jpeg(5, (1000, 600)))
    checked, _ = validation.validate_image(str(big), 256, 95, encode=False)
    encoded, data = validation.validate_image(str(big), 256, 95)
    assert checked.original == encoded.original == (1000, 600)
    assert checked.encoded == (250, 150)  # JPEG draft: decoded at 1/4 scale, within 10% of 256
    assert encoded.encoded == (250, 150) and Image.open(io.BytesIO(data)).size == (250, 150)


def test_only_files_that_need_it_are_reencoded(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    gray = io.BytesIO()
    Image.new("L", (40, 30), 128).save(gray, "JPEG")
    files = {
        "baseline.jpg": (_synthetic_jpeg(1, (60, 40)), True),
        "progressive.jpg": (_synthetic_jpeg(2, (60, 40), progressive=True), False),
        "rotated.jpg": (_synthetic_jpeg(3, (60, 40), exif=exif.tobytes()), False),
        "large.jpg": (_synthetic_jpeg(4, (200, 100)), False),
        "gray.jpg": (gray.getvalue(), False),
    }
    for name, (content, kept) in files.items():
        (tmp_path / name).write_bytes(content)
        outcome, data = validation.validate_image(str(tmp_path / name), 64, 95)
        assert outcome.ok and outcome.kept == kept, name
        assert (data == content) == kept, name
        assert outcome.nbytes == len(data)
    source = tmp_path / "src"
    source.mkdir()
    for i in range(3):
        (source / f"cat.{i}.jpg").write_bytes(_synthetic_jpeg(10 + i))
        (source / f"dog.{i}.jpg").write_bytes(_synthetic_jpeg(20 + i, progressive=True))
    cfg = core.PrepareSettings(val_fraction=0.25, test_fraction=0.25, max_side=64, workers=1)
    result = core.prepare(str(source), str(tmp_path / "out"), cfg, progress=False)
    assert "Kept as they were (baseline RGB JPEG within max_side, upright): 3; re-encoded: 3." in (
        result.report
    )


# ------------------------------------------------------------------------------ split


def test_split_is_deterministic_stratified_and_listing_order_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _kaggle(tmp_path / "src", per_class=6)
    core.prepare(str(source), str(tmp_path / "a"), SMALL, progress=False)

    walk = sources.walk

    def shuffled(root: Path) -> list[str]:
        names = walk(root)
        random.Random(3).shuffle(names)
        return names

    monkeypatch.setattr(sources, "walk", shuffled)
    core.prepare(str(source), str(tmp_path / "b"), SMALL, progress=False)
    assert _splits(tmp_path / "a") == _splits(tmp_path / "b")
    for split, n in (("train", 3), ("val", 1), ("test", 1)):
        assert records.load_manifest(tmp_path / "a").splits[split].per_class == {
            "cat": n,
            "dog": n,
        }
    other = dataclasses.replace(SMALL, seed=7)
    core.prepare(str(source), str(tmp_path / "c"), other, progress=False)
    assert _splits(tmp_path / "a") != _splits(tmp_path / "c")


def test_too_few_images_is_a_clear_error(tmp_path: Path) -> None:
    source = _kaggle(tmp_path / "src", per_class=3)
    with pytest.raises(
        errors.SourceError,
        match=r"cat has 3 valid images.*To split all images instead, pass --val-fraction 0.2",
    ):
        core.prepare(str(source), str(tmp_path / "out"), core.PrepareSettings(workers=1))
    assert not (tmp_path / "out").exists()


def test_no_images_or_one_class_is_a_clear_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "notes").mkdir(parents=True)
    (empty / "README.md").write_text("hi")
    with pytest.raises(
        errors.SourceError,
        match=r"found 0 cat and 0 dog images \(first entries: README.md, notes/\)",
    ):
        core.prepare(str(empty), str(tmp_path / "o1"), SMALL)
    cats = tmp_path / "cats"
    cats.mkdir()
    (cats / "cat.1.jpg").write_bytes(_synthetic_jpeg(1))
    with pytest.raises(errors.SourceError, match=f"under {cats}, found 1 cat and 0 dog images"):
        core.prepare(str(cats), str(tmp_path / "o2"), SMALL)
    with pytest.raises(errors.SourceError, match="does not exist"):
        core.prepare(str(tmp_path / "missing"), str(tmp_path / "o3"), SMALL)


# ------------------------------------------------------------------------------ layouts, archives


def _zip(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, path.relative_to(folder).as_posix())
    return target


def _tar(folder: Path, target: Path) -> Path:
    with tarfile.open(target, "w:gz") as tf:
        for path in sorted(folder.rglob("*")):
            tf.add(path, path.relative_to(folder).as_posix(), recursive=False)
    return target


def test_petimages_layout_folder_zip_and_tar_agree(tmp_path: Path) -> None:
    source = _petimages(tmp_path / "src", per_class=5)
    archives = [_zip(source, tmp_path / "pets.zip"), _tar(source, tmp_path / "pets.tar.gz")]
    core.prepare(str(source), str(tmp_path / "dir"), SMALL, progress=False)
    manifest = records.load_manifest(tmp_path / "dir")
    assert manifest.splits["train"].per_class == {"cat": 3, "dog": 3}
    assert manifest.to_dict()["found"] == {"per_class": {"cat": 5, "dog": 5}, "ignored": 1}
    for archive in archives:
        out = tmp_path / archive.name.replace(".", "_")
        core.prepare(str(archive), str(out), SMALL, progress=False)
        assert _splits(out) == _splits(tmp_path / "dir"), archive.name


def test_unsafe_archive_members_are_never_written(tmp_path: Path) -> None:
    (tmp_path / "victim").mkdir()
    good = _kaggle(tmp_path / "good", per_class=5)
    bad_zip = _zip(good, tmp_path / "bad.zip")
    with zipfile.ZipFile(bad_zip, "a") as zf:
        zf.writestr("../victim/cat.evil.jpg", _photo("cat", 0))
        zf.writestr("/tmp/cat.abs.jpg", _photo("cat", 0))
        link = zipfile.ZipInfo("dog.link.jpg")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    bad_tar = tmp_path / "bad.tar"
    with tarfile.open(bad_tar, "w") as tf:
        for path in sorted(good.iterdir()):
            tf.add(path, path.name)
        data = _photo("dog", 0)
        for name in ("../victim/dog.evil.jpg", "/tmp/dog.abs.jpg"):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, kind, target in (
            ("cat.symlink.jpg", tarfile.SYMTYPE, "/etc/passwd"),
            ("cat.hardlink.jpg", tarfile.LNKTYPE, "cat.0.jpg"),
        ):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tf.addfile(info)
    for archive, unsafe in (
        (bad_zip, {"../victim/cat.evil.jpg", "/tmp/cat.abs.jpg", "dog.link.jpg"}),
        (
            bad_tar,
            {"../victim/dog.evil.jpg", "/tmp/dog.abs.jpg", "cat.symlink.jpg", "cat.hardlink.jpg"},
        ),
    ):
        out = tmp_path / f"out-{archive.suffix[1:]}"
        result = core.prepare(str(archive), str(out), SMALL, progress=False)
        reasons = {q.file: q.reason for q in records.load_manifest(out).quarantined}
        assert set(reasons) == unsafe
        assert all(r.startswith("unsafe archive member") for r in reasons.values())
        assert sum(result.counts.values()) == 10
    assert list((tmp_path / "victim").iterdir()) == []
    assert not Path("/tmp/cat.abs.jpg").exists() and not Path("/tmp/dog.abs.jpg").exists()


def test_archive_bombs_are_refused_before_extracting(tmp_path: Path) -> None:
    good = _kaggle(tmp_path / "good", per_class=5)
    zeros = b"\0" * (20 * 1024 * 1024)
    bomb_zip = _zip(good, tmp_path / "bomb.zip")
    with zipfile.ZipFile(bomb_zip, "a", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cat.zeros.jpg", zeros)
    with pytest.raises(
        errors.SourceError,
        match=r"member cat.zeros.jpg expands .*:1, limit 100:1\), which looks like a zip bomb",
    ):
        core.prepare(str(bomb_zip), str(tmp_path / "o1"), SMALL)
    bomb_tar = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb_tar, "w:gz") as tf:
        info = tarfile.TarInfo("dog.zeros.jpg")
        info.size = len(zeros)
        tf.addfile(info, io.BytesIO(zeros))
    with pytest.raises(errors.SourceError, match="looks like a zip bomb"):
        core.prepare(str(bomb_tar), str(tmp_path / "o2"), SMALL)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_corrupt_archives_are_a_clear_error(tmp_path: Path) -> None:
    good = _kaggle(tmp_path / "good", per_class=5)
    for archive in (_zip(good, tmp_path / "a.zip"), _tar(good, tmp_path / "a.tar.gz")):
        data = archive.read_bytes()
        archive.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(errors.SourceError, match="corrupt|neither a zip nor a tar"):
            core.prepare(str(archive), str(tmp_path / "o"), SMALL, progress=False)
    flipped = _zip(good, tmp_path / "b.zip")
    data = bytearray(flipped.read_bytes())
    data[200] ^= 0xFF  # inside the first member's compressed data
    flipped.write_bytes(bytes(data))
    with pytest.raises(errors.SourceError, match="is corrupt or truncated"):
        core.prepare(str(flipped), str(tmp_path / "o"), SMALL, progress=False)
    assert not (tmp_path / "o").exists()


def test_declared_size_beyond_free_disk_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = _zip(_kaggle(tmp_path / "good", per_class=5), tmp_path / "a.zip")
    real = shutil.disk_usage
    monkeypatch.setattr(archives.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(errors.SourceError, match=r"declare .* GB, more than the 0.0 GB free"):
        core.prepare(str(archive), str(tmp_path / "o"), SMALL)


# ------------------------------------------------------------------------------ output


def test_output_is_reused_or_protected(tmp_path: Path) -> None:
    source = _kaggle(tmp_path / "src", per_class=5)
    out = tmp_path / "out"
    first = core.prepare(str(source), str(out), SMALL, progress=False)
    manifest_bytes = (out / records.MANIFEST).read_bytes()
    again = core.prepare(str(source), str(out), SMALL, progress=False)
    assert again.already_prepared and not first.already_prepared
    assert again.counts == first.counts and (out / records.MANIFEST).read_bytes() == manifest_bytes
    with pytest.raises(
        errors.OutputConflictError, match="Refusing to overwrite .* Choose another --output"
    ):
        core.prepare(str(source), str(out), dataclasses.replace(SMALL, seed=1), progress=False)
    assert (out / records.MANIFEST).read_bytes() == manifest_bytes
    (out / "train-00000-of-00001.tfrecord").unlink()  # damaged: same settings redo it
    redone = core.prepare(str(source), str(out), SMALL, progress=False)
    assert not redone.already_prepared and (out / records.MANIFEST).read_bytes() == manifest_bytes
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    with pytest.raises(
        errors.OutputConflictError, match=r"not part of a prepared dataset \(first: keep.txt\)"
    ):
        core.prepare(str(source), str(foreign), SMALL, progress=False)


# ------------------------------------------------------------------------------ manifest


def test_manifest_round_trips_to_the_same_bytes(tmp_path: Path) -> None:
    source = _kaggle(tmp_path / "src", per_class=5)
    _bad_inputs(source)
    core.prepare(str(source), str(tmp_path / "out"), SMALL, progress=False)
    text = (tmp_path / "out" / records.MANIFEST).read_text()
    manifest = records.load_manifest(tmp_path / "out")
    assert manifest.to_json() == text == json.dumps(json.loads(text), indent=2, sort_keys=True)
    assert manifest.classes == records.CLASSES and manifest.found is not None
    assert manifest.splits["test"].shards[0].count == manifest.splits["test"].count == 2
    minimal = records.Manifest.from_json(
        json.dumps(
            {
                "classes": ["cat", "dog"],
                "splits": {},
                "quarantined": [],
                "seed": 1,
                "source_fingerprint": "x",
            }
        ),
        "m.json",
    )
    assert minimal.source is None and set(minimal.to_dict()) == {
        "classes",
        "splits",
        "quarantined",
        "seed",
        "source_fingerprint",
    }


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("seed"), "m.json has no 'seed' field"),
        (lambda m: m.update(classes="cat"), "m.json: field 'classes' must be a list"),
        (
            lambda m: m["splits"]["train"]["shards"][0].update(size="9"),
            "m.json: field 'splits.train.shards[0].size' must be an integer",
        ),
        (
            lambda m: m["splits"]["val"]["per_class"].update(cat=True),
            "m.json: field 'splits.val.per_class.cat' must be an integer",
        ),
        (lambda m: m["quarantined"].append(3), "quarantined[0] must be a JSON object"),
    ],
)
def test_manifest_structure_errors_name_the_file_and_field(
    tiny_dataset: object, edit: object, message: str
) -> None:
    folder = Path(tiny_dataset())  # type: ignore[operator]
    data = json.loads((folder / records.MANIFEST).read_text())
    edit(data)  # type: ignore[operator]
    with pytest.raises(errors.DatasetError, match=re.escape(message)):
        records.Manifest.from_json(json.dumps(data), "m.json")
    with pytest.raises(errors.DatasetError, match="m.json is not valid JSON"):
        records.Manifest.from_json("{", "m.json")


def test_manifest_identity_covers_classes_and_shard_checksums(tiny_dataset: object) -> None:
    manifest = records.load_manifest(tiny_dataset())  # type: ignore[operator]
    same = records.Manifest.from_json(manifest.to_json(), "copy")
    assert manifest.identity() == same.identity() and len(manifest.identity()) == 64
    test_only = manifest.identity(("test",))
    assert test_only != manifest.identity()
    train = manifest.splits["train"]
    changed_train = dataclasses.replace(
        manifest,
        splits={
            **manifest.splits,
            "train": dataclasses.replace(
                train, shards=(dataclasses.replace(train.shards[0], sha256="0" * 64),)
            ),
        },
    )
    assert changed_train.identity() != manifest.identity()
    assert changed_train.identity(("test",)) == test_only
    assert dataclasses.replace(manifest, seed=99).identity() == manifest.identity()
    renamed = dataclasses.replace(manifest, classes=("dog", "cat"))
    assert renamed.identity(("test",)) != test_only
    with pytest.raises(errors.DatasetError, match="has no 'holdout' split"):
        manifest.identity(("holdout",))


def test_shard_bytes_do_not_depend_on_the_process(tmp_path: Path) -> None:
    script = (
        "import sys; from pathlib import Path; from catsdogs.components.common import records; "
        "print(records.write_shard(Path(sys.argv[1]), [(b'jpeg', 1, 'dog.1.jpg')]).sha256)"
    )
    digests = set()
    for seed in ("1", "2", "3"):
        done = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / f"{seed}.tfrecord")],
            env={**os.environ, "PYTHONHASHSEED": seed, "TF_CPP_MIN_LOG_LEVEL": "3"},
            capture_output=True,
            text=True,
            check=True,
        )
        digests.add(done.stdout.split()[-1])
    assert len(digests) == 1


def test_shards_are_the_bytes_tensorflow_writes(tmp_path: Path) -> None:
    import tensorflow as tf

    items = [(b"jpeg", 1, "dog.1.jpg"), (b"", 0, ""), (os.urandom(300), 0, "cät/ü.jpg")]
    items.append((b"x" * 200_000, 1, "a" * 300))  # multi-byte lengths
    entry = records.write_shard(tmp_path / "mine.tfrecord", items)
    with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as writer:
        for image, label, ident in items:
            feature = {
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
                "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[ident.encode()])),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString(deterministic=True))
    assert (tmp_path / "mine.tfrecord").read_bytes() == (tmp_path / "tf.tfrecord").read_bytes()
    assert entry.count == tfrecord.count_records(tmp_path / "mine.tfrecord") == 4
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_settings_errors_are_settings_errors() -> None:
    with pytest.raises(errors.SettingsError, match="train_per_class must be at least 1"):
        core.PrepareSettings(train_per_class=0)


# ------------------------------------------------------------------------------ https


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A local HTTP server on 127.0.0.1 serving a folder; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_url_source_downloads_checks_sha256_and_caches(
    tmp_path: Path, http_root: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CATSDOGS_CACHE", str(tmp_path / "cache"))
    www, base = http_root
    archive = _zip(_petimages(tmp_path / "src", per_class=5), www / "pets.zip")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    url = f"{base}/pets.zip"
    wrong = dataclasses.replace(SMALL, sha256="0" * 64)
    with pytest.raises(errors.SourceError, match=f"has sha256 {digest}, expected 0000"):
        core.prepare(url, str(tmp_path / "o1"), wrong, progress=False)
    assert not list((tmp_path / "cache").rglob("*.zip"))  # nothing half-downloaded is kept
    result = core.prepare(
        url, str(tmp_path / "o2"), dataclasses.replace(SMALL, sha256=digest), progress=False
    )
    assert result.source_fingerprint == core.source_fingerprint(url)
    assert result.source_fingerprint.startswith("url:")
    assert len(list((tmp_path / "cache").rglob("*pets.zip"))) == 1
    core.prepare(str(archive), str(tmp_path / "o3"), SMALL, progress=False)
    assert _splits(tmp_path / "o2") == _splits(tmp_path / "o3")
    with pytest.raises(errors.SourceError, match="HTTP 404"):
        core.prepare(f"{base}/missing.zip", str(tmp_path / "o4"), SMALL, progress=False)


# ------------------------------------------------------------------------------ gs://


def test_remote_source_and_output(tmp_path: Path, remote_bucket: str) -> None:
    bucket = remote_bucket  # gs:// and s3://: a prefix and an archive object
    source = _kaggle(tmp_path / "src", per_class=5)
    _bad_inputs(source)
    storage.upload_dir(source, f"{bucket}/raw")
    storage.upload_file(_zip(source, tmp_path / "raw.zip"), f"{bucket}/raw.zip")
    cfg = dataclasses.replace(SMALL, workers=2)
    core.prepare(str(source), str(tmp_path / "local"), cfg, progress=False)
    result = core.prepare(f"{bucket}/raw", f"{bucket}/prepared", cfg, progress=False)
    assert result.manifest_uri == f"{bucket}/prepared/manifest.json"
    assert result.source_fingerprint.startswith(bucket.split("://")[0] + ":")
    assert _splits(f"{bucket}/prepared") == _splits(tmp_path / "local")
    with records.local_dataset(f"{bucket}/prepared") as (_, manifest):
        assert len(manifest.quarantined) == 4
    core.prepare(f"{bucket}/raw.zip", f"{bucket}/from-zip", cfg, progress=False)
    assert _splits(f"{bucket}/from-zip") == _splits(tmp_path / "local")
    again = core.prepare(f"{bucket}/raw", f"{bucket}/prepared", cfg, progress=False)
    assert again.already_prepared


# ------------------------------------------------------------------------------ CLI, wrapper


def test_cli_prepare(tmp_path: Path) -> None:
    source = _kaggle(tmp_path / "src", per_class=5)
    runner = CliRunner()
    args = ["prepare", "--source", str(source), "--workers", "1"]
    ok = runner.invoke(
        app,
        [
            *args,
            "--output",
            str(tmp_path / "o"),
            "--train-per-class",
            "3",
            "--val-per-class",
            "1",
            "--test-per-class",
            "1",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "prepared: train 6, val 2, test 2; 0 quarantined" in ok.output
    mixed = runner.invoke(
        app,
        [*args, "--output", str(tmp_path / "m"), "--train-per-class", "3", "--val-fraction", "0.2"],
    )
    assert mixed.exit_code == 2
    assert "--train-per-class and --val-fraction cannot be combined" in mixed.output
    few = runner.invoke(app, [*args, "--output", str(tmp_path / "f")])
    assert few.exit_code == 2 and "Too few images" in few.output and "Traceback" not in few.output
    fractions = runner.invoke(
        app,
        [
            *args,
            "--output",
            str(tmp_path / "fr"),
            "--val-fraction",
            "0.2",
            "--test-fraction",
            "0.2",
        ],
    )
    assert fractions.exit_code == 0, fractions.output
    assert "train 6, val 2, test 2" in fractions.output


def test_wrapper_python_func(tmp_path: Path) -> None:
    from catsdogs.components.prepare_dataset.component import prepare_dataset
    from kfp import dsl

    source = _kaggle(tmp_path / "src", per_class=5)
    dataset = dsl.Dataset(uri=str(tmp_path / "dataset"))
    report = dsl.Markdown(uri=str(tmp_path / "report.md"))
    fingerprint = prepare_dataset.python_func(
        source=str(source),
        dataset=dataset,
        report=report,
        train_per_class=3,
        val_per_class=1,
        test_per_class=1,
    )
    assert fingerprint == core.source_fingerprint(str(source))
    assert records.load_manifest(tmp_path / "dataset").source_fingerprint == fingerprint
    assert (tmp_path / "report.md").read_text().startswith("# Data quality report")
    assert dataset.metadata["train_count"] == 6 and dataset.metadata["quarantined"] == 0
