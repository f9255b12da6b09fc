"""prepare_dataset on the real train-6000 photos: the default 1000/500/500 split, twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catsdogs.cli.app import app
from catsdogs.components.common import records
from typer.testing import CliRunner

from tests.conftest import TRAIN_6000, needs


@pytest.mark.realdata
@needs(TRAIN_6000)
def test_default_split_of_train_6000_is_complete_and_deterministic(tmp_path: Path) -> None:
    runner = CliRunner()
    outputs = [tmp_path / "first", tmp_path / "second"]
    for output in outputs:
        result = runner.invoke(
            app, ["prepare", "--source", str(TRAIN_6000), "--output", str(output)]
        )
        assert result.exit_code == 0, result.output
        assert "train 2000, val 1000, test 1000; 0 quarantined" in result.output
    first, second = (records.load_manifest(o) for o in outputs)
    for split, n in (("train", 1000), ("val", 500), ("test", 500)):
        assert first.splits[split].per_class == {"cat": n, "dog": n}
    assert json.dumps(first.to_dict()["splits"], sort_keys=True) == json.dumps(
        second.to_dict()["splits"], sort_keys=True
    )
    with records.local_dataset(str(outputs[0]), ("val",)) as (folder, manifest):
        ids = [
            i.numpy().decode()
            for _, _, i in records.read_split(folder, manifest, "val", None, with_ids=True)
        ]
    assert len(ids) == len(set(ids)) == 1000
    assert all((TRAIN_6000 / name).is_file() for name in ids)
