"""The CLI's small promises: ``--version``, and pipeline options that are real choices."""

from __future__ import annotations

import re
from importlib.metadata import version

import pytest
from catsdogs.cli import train
from catsdogs.cli.app import app
from catsdogs.components.common.training.augmentation import AUGMENTATIONS
from catsdogs.components.train_scratch.core import ARCHITECTURES
from catsdogs.components.train_transfer.settings import MODES
from typer.testing import CliRunner


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"catsdogs {version('catsdogs')}\n"


def test_choices_are_the_settings_values() -> None:
    assert tuple(train.TransferMode) == MODES
    assert tuple(train.Architecture) == ARCHITECTURES
    assert tuple(train.Augmentation) == AUGMENTATIONS


@pytest.mark.parametrize(
    "command", [["run"], ["submit"], ["schedule", "create", "--cron", "0 3 * * *"]]
)
@pytest.mark.parametrize(
    "option", ["--transfer-mode", "--scratch-architecture", "--scratch-augmentation"]
)
def test_pipeline_choices_are_checked_by_the_option(command: list[str], option: str) -> None:
    result = CliRunner().invoke(app, [*command, "--source", "photos", option, "bogus"])
    assert result.exit_code == 2, result.output
    text = " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split())  # rich's box, unwrapped
    assert f"Invalid value for '{option}'" in text
    assert "'bogus' is not one of" in text


def test_runner_docker_without_the_docker_package_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from catsdogs.pipelines import docker_runner

    monkeypatch.setitem(sys.modules, "docker", None)  # import docker -> ImportError
    with pytest.raises(docker_runner.SettingsError, match=r"pip install .*'catsdogs\[docker\]'"):
        docker_runner._ping("unix:///nowhere.sock")
