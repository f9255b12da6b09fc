"""The pipeline's serving steps as compiled: side effects never cached, the deploy step's inputs."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from catsdogs.pipelines.compile import compile_pipeline


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = compile_pipeline(tmp_path_factory.mktemp("compiled") / "pipeline.yaml")
    return next(iter(yaml.safe_load_all(path.read_text())))


def tasks_of(spec: dict[str, Any], component: str) -> list[dict[str, Any]]:
    """Every task, in any sub-DAG, that runs the component (its ``-2``, ``-3`` copies too)."""
    pattern = re.compile(rf"^comp-{component}(-\d+)?$")
    dags = [spec["root"]] + [c for c in spec["components"].values() if "dag" in c]
    return [
        task
        for dag in dags
        for task in dag["dag"]["tasks"].values()
        if pattern.match(task["componentRef"]["name"])
    ]


@pytest.mark.parametrize("component", ["promote", "export-and-deploy"])
def test_side_effect_steps_are_never_cached(spec: dict[str, Any], component: str) -> None:
    # promote reads the champion pointer, export-and-deploy changes the cluster: a cached result
    # would skip the gate's re-check and never re-apply a deleted InferenceService.
    tasks = tasks_of(spec, component)
    assert len(tasks) == 4  # one per finish copy
    for task in tasks:
        assert task.get("cachingOptions", {}).get("enableCache", False) is False, task
