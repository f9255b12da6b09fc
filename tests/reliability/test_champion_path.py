"""champion.json's ``path`` is followed only when it is exactly ``versions/vNNNN`` of its version.

A pointer naming ``../../etc`` made promote and export read outside the champion location (and
the error listed that folder's files); on gs:// it made another prefix's model the champion.
"""

from __future__ import annotations

import json

import pytest
from catsdogs.components.common import storage
from catsdogs.components.promote import champion, core
from catsdogs.components.serve import export
from typer.testing import CliRunner

BAD_PATHS = [
    "../../../../etc",
    "versions/v0001/../../../elsewhere/versions/v0001",
    "/etc",
    "versions/v1",
    "versions/v0002",  # another version than the record's
    "gs://other-bucket/champion/versions/v0001",
    "",
]


def _tamper(location: str, path: object) -> None:
    pointer = storage.join(location, champion.CHAMPION_FILE)
    record = json.loads(storage.read_text(pointer))
    record["path"] = path
    storage.write_text(pointer, json.dumps(record))


def _cli(args: list[str]) -> str:
    from catsdogs.cli.app import app

    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()  # progress lines may come first
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return lines[-1]


def _check_refused(promotable: dict, location: str, path: str) -> None:
    message_fragment = "a champion pointer must name exactly versions/v0001"
    with pytest.raises(storage.StorageError, match=message_fragment):
        champion.read_pointer(location)
    model, evaluation = promotable["better"]
    line = _cli(
        ["promote", "--model", model, "--evaluation", evaluation, "--data", promotable["data"],
         "--champion", location]
    )  # fmt: skip
    assert message_fragment in line, line
    assert "holds" not in line and "model.keras" not in line, "the error lists folder contents"
    with pytest.raises(storage.StorageError, match=message_fragment):  # what export follows
        export.resolve_source(location)


@pytest.mark.parametrize("path", BAD_PATHS)
def test_a_local_pointer_outside_versions_is_refused(promotable: dict, tmp_path, path: str) -> None:
    location = str(tmp_path / "champion")
    model, evaluation = promotable["first"]
    assert core.promote(model, evaluation, promotable["data"], location).promoted
    _tamper(location, path)
    _check_refused(promotable, location, path)
    # The promotion that was refused wrote nothing: only the first version is there.
    assert champion.existing_versions(location) == [1]


@pytest.mark.parametrize("path", ["../elsewhere/versions/v0001", "versions/v0001/.."])
def test_a_gcs_pointer_to_another_prefix_is_refused(promotable: dict, bucket: str, path: str):
    location = f"{bucket}/champion"
    model, evaluation = promotable["first"]
    # Another prefix holding a complete version: what the tampered pointer leads to.
    assert core.promote(model, evaluation, promotable["data"], f"{bucket}/elsewhere").promoted
    assert core.promote(model, evaluation, promotable["data"], location).promoted
    _tamper(location, path)
    _check_refused(promotable, location, path)


@pytest.mark.parametrize("version", [0, -1, "1", True, None, 1.5])
def test_a_pointer_without_a_positive_integer_version_is_refused(tmp_path, version) -> None:
    location = tmp_path / "champion"
    location.mkdir()
    (location / champion.CHAMPION_FILE).write_text(
        json.dumps({"version": version, "path": "versions/v0001"})
    )
    with pytest.raises(storage.StorageError, match="positive integer"):
        champion.read_pointer(str(location))
