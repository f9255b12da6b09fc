"""Hostile sources for prepare: bad links, unsafe object names, credentials in URLs, blank URIs,
and file names that try to break or inject into the Markdown quality report.
"""

from __future__ import annotations

import functools
import http.server
import io
import re
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from catsdogs.components.common import errors, model_dir, records, storage
from catsdogs.components.prepare_dataset import core, sources
from PIL import Image

SMALL = core.PrepareSettings(train_per_class=3, val_per_class=1, test_per_class=1, workers=1)


def _jpeg(seed: int, size: tuple[int, int] = (40, 36)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (seed * 37 % 256, seed * 91 % 256, 80)).save(buffer, "JPEG")
    return buffer.getvalue()


def _kaggle(folder: Path, per_class: int = 5) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(per_class):
        (folder / f"cat.{i}.jpg").write_bytes(_jpeg(i))
        (folder / f"dog.{i}.jpg").write_bytes(_jpeg(50 + i))
    return folder


def _reasons(output: Path | str) -> dict[str, str]:
    return {q.file: q.reason for q in records.load_manifest(output).quarantined}


def test_bad_symbolic_links_are_quarantined_and_links_inside_are_followed(tmp_path: Path) -> None:
    source = _kaggle(tmp_path / "src")
    outside = tmp_path / "private" / "cat.secret.jpg"
    outside.parent.mkdir()
    outside.write_bytes(_jpeg(99))
    (source / "cat.dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    (source / "dog.outside.jpg").symlink_to(outside)
    (source / "cat.inside.jpg").symlink_to(source / "cat.0.jpg")
    (source / "dog.loop.jpg").symlink_to(source / "dog.loop.jpg")
    result = core.prepare(str(source), str(tmp_path / "out"), SMALL, progress=False)
    assert _reasons(tmp_path / "out") == {
        "cat.dangling.jpg": "dangling symbolic link: its target does not exist (not read)",
        "dog.loop.jpg": "dangling symbolic link: its target does not exist (not read)",
        "dog.outside.jpg": "symbolic link to a file outside the source folder (not followed)",
    }
    assert result.quarantined == 3 and sum(result.counts.values()) == 10


def test_unsafe_remote_object_names_are_quarantined_not_fatal(
    tmp_path: Path, remote_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = remote_bucket  # gs:// and s3://
    storage.upload_dir(_kaggle(tmp_path / "src"), f"{bucket}/raw")
    storage.write_bytes(f"{bucket}/raw/cat/1.jpg", _jpeg(7))
    # GCS keeps such names as they are; fake-gcs-server normalizes them, so the listing adds them.
    unsafe = ["../cat.up.jpg", "sub/../../dog.up.jpg", "./dog.here.jpg", "/cat.empty.jpg", "cat"]
    listing = storage.list_files

    def hostile_listing(uri: str) -> list[str]:
        names = listing(uri)
        return sorted([*names, *unsafe]) if uri == f"{bucket}/raw" else names

    monkeypatch.setattr(storage, "list_files", hostile_listing)
    result = core.prepare(f"{bucket}/raw", str(tmp_path / "out"), SMALL, progress=False)
    dots = "unsafe object name: '.', '..' or an empty part in its path (not downloaded)"
    assert _reasons(tmp_path / "out") == {
        **{name: dots for name in unsafe[:4]},
        "cat": "unsafe object name: also the folder of other objects (not downloaded)",
    }
    assert sum(result.counts.values()) == 10  # cat/1.jpg (a cat) was downloaded, not needed


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A local HTTP server on 127.0.0.1 serving a folder; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


SECRETS = ("hunter2", "SIGNATURE0123", "CREDENTIAL77", "TOKEN55")


def test_url_credentials_are_redacted_from_manifest_report_and_errors(
    tmp_path: Path, http_root: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CATSDOGS_CACHE", str(tmp_path / "cache"))
    www, host = http_root
    source = _kaggle(tmp_path / "src")
    with zipfile.ZipFile(www / "pets.zip", "w") as zf:
        for path in sorted(source.iterdir()):
            zf.write(path, path.name)
    query = "X-Goog-Signature=SIGNATURE0123&X-Goog-Credential=CREDENTIAL77&x-amz-security-token=TOKEN55&Expires=9"
    url = f"http://user:hunter2@{host}/pets.zip?{query}"
    core.prepare(url, str(tmp_path / "out"), SMALL, progress=False)
    manifest = records.load_manifest(tmp_path / "out")
    assert manifest.source == (
        f"http://***@{host}/pets.zip?X-Goog-Signature=***&X-Goog-Credential=***"
        "&x-amz-security-token=***&Expires=9"
    )
    for name in (records.MANIFEST, core.REPORT):
        text = (tmp_path / "out" / name).read_text()
        assert not [s for s in SECRETS if s in text], name
    with pytest.raises(errors.SourceError) as missing:
        core.prepare(url.replace("pets.zip", "gone.zip"), str(tmp_path / "o2"), SMALL)
    assert "HTTP 404" in str(missing.value)
    assert not [s for s in SECRETS if s in str(missing.value)]
    with pytest.raises(errors.SourceError) as unreachable:
        core.prepare(
            "http://user:hunter2@127.0.0.1:1/x.zip?sig=TOKEN55", str(tmp_path / "o3"), SMALL
        )
    assert "Could not reach http://***@127.0.0.1:1/x.zip?sig=***" in str(unreachable.value)
    assert unreachable.value.__cause__ is None and unreachable.value.__suppress_context__


@pytest.mark.parametrize("blank", ["", "   ", "\t\n"])
def test_blank_uris_are_errors_not_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    monkeypatch.chdir(_kaggle(tmp_path / "cwd"))  # what an empty source used to prepare
    with pytest.raises(errors.SourceError, match=re.escape(f"The source is empty ({blank!r})")):
        core.prepare(blank, str(tmp_path / "out"), SMALL, progress=False)
    with pytest.raises(errors.SourceError, match="The source is empty"):
        sources.source_fingerprint(blank)  # the pipeline's first step
    with pytest.raises(errors.SettingsError, match="The output location is empty"):
        core.prepare(str(tmp_path / "cwd"), blank, SMALL, progress=False)
    with pytest.raises(errors.DatasetError, match="The dataset location is empty"):
        records.load_manifest(blank)
    with pytest.raises(errors.ModelError, match="The model location is empty"):
        model_dir.load_model(blank)
    assert not (tmp_path / "out").exists() and not (tmp_path / "cwd" / records.MANIFEST).exists()
    for scheme in ("gs", "s3"):
        with pytest.raises(errors.SourceError, match=f"names no bucket; expected {scheme}://"):
            core.prepare(f"{scheme}:///raw", str(tmp_path / "out"), SMALL, progress=False)


HOSTILE = {
    "cat.<img src=x onerror=alert(1)>.jpg": b"not an image",
    "dog.| injected | cell |.jpg": b"",
    "cat.[click](javascript:alert(1)).jpg": b"broken",
    "dog.`code` *bold* <b>.jpg": b"x",
}


def test_quality_report_escapes_every_name(tmp_path: Path) -> None:
    source = _kaggle(tmp_path / "src")
    for name, content in HOSTILE.items():
        (source / name).write_bytes(content)
    (source / "notes <script>alert(1)<\\script>.txt").write_text("ignored")
    (source / "cat.line\nbreak.jpg").write_text("ignored: no class (the pattern stops at lines)")
    core.prepare(str(source), str(tmp_path / "out"), SMALL, progress=False)
    report = (tmp_path / "out" / core.REPORT).read_text()
    assert "<img" not in report and "<script" not in report and "<b>" not in report
    assert "](" not in report.replace("\\](", "")  # no link syntax survives
    section = report.split("## Quarantined (4)")[1].split("##")[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + len(HOSTILE)
    for row in rows:
        assert len(re.findall(r"(?<!\\)\|", row)) == 3, row  # file | reason: no extra cells
    assert "cat.line\\\\x0abreak.jpg" in report  # the newline shown, not obeyed
