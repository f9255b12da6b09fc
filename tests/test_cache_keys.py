"""Cache keys of the compiled pipeline as the KFP 2.17.0 backend computes them (tests/kfp_cache_key.py).

Scheduled retraining relies on them: an unchanged run must hit the cache from prepare to render,
new data must miss from prepare down, a new image must miss everywhere, and the steps with effects
outside their outputs (promote, export-and-deploy) must never be cached.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from catsdogs.pipelines import steps

from tests.kfp_cache_key import Run, Store, Walked, Walker, cache_key, fingerprint, go_float

DIGEST = "ghcr.io/catsdogs/catsdogs-gpu:0.1.0@sha256:" + "a" * 64
OTHER_DIGEST = "ghcr.io/catsdogs/catsdogs-gpu:0.1.0@sha256:" + "b" * 64
ARGUMENTS = {
    "source": "gs://bucket/raw",
    "trainers": "both",
    "checkpoint_root": "gs://bucket/checkpoints",
    "champion_uri": "gs://bucket/champion",
    "serving_uri": "gs://bucket/serving",
}
CACHED_STEPS = ("prepare-dataset", "train-scratch", "train-transfer", "evaluate", "render")


def compiled(folder: Path, image: str) -> dict[str, Any]:
    """Compile in a fresh process: the component modules read CATSDOGS_IMAGE when imported."""
    path = folder / f"{image[-6:]}.yaml"
    env = dict(os.environ, CATSDOGS_IMAGE=image)
    code = (
        "import sys; from catsdogs.pipelines.compile import compile_pipeline as c; c(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], env=env, check=True, timeout=300)
    return dict(next(yaml.safe_load_all(path.read_text())))


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return compiled(tmp_path_factory.mktemp("spec"), DIGEST)


def make_outputs(source_fingerprint: str) -> Any:
    """Parameter outputs of each task when it runs (the glue steps run for real)."""

    def outputs(component: str, values: dict[str, Any]) -> dict[str, Any]:
        base = re.sub(r"-\d+$", "", component.removeprefix("comp-"))
        if base == "fingerprint-source":
            return {"Output": source_fingerprint}
        if base == "checkpoint-dirs":
            return steps.checkpoint_dirs(**values)._asdict()
        if base == "pick-better":
            return {"Output": steps.pick_better(**values)}
        if base == "promote":
            return {"Output": True}
        return {"Output": 0.9 if base in ("train-scratch", "train-transfer", "evaluate") else "x"}

    return outputs


def walk(spec: dict[str, Any], store: Store, n: int, source_fingerprint: str = "f1") -> Walked:
    run = Run(
        run_id=f"0000000{n}-run",
        run_name=f"catsdogs-retrain-{n}",
        create_time=f"2026-01-0{n}T03:00:00Z",
        schedule_time=f"2026-01-0{n}T03:00:00Z",
    )
    return Walker(spec, make_outputs(source_fingerprint), store).run(run, ARGUMENTS)


def of(walked: Walked, step: str) -> dict[str, str | None]:
    return {path: key for path, key in walked.keys.items() if path.split("/")[-1].startswith(step)}


def test_the_port_reproduces_the_backends_own_fingerprints() -> None:
    """The two fingerprints pinned by cacheutils/cache_test.go (TestGenerateFingerPrint, 2.17.0)."""
    model_schema = (
        "title: kfp.Model\ntype: object\nproperties:\n  framework:\n    type: string\n"
        "  framework_version:\n    type: string\n"
    )
    key = cache_key(
        {"dataset_one": ["1"], "dataset_two": ["2"]},
        {"message": "Some string value", "num_steps": 5},
        {
            "model": {"type": {"instanceSchema": model_schema}, "metadata": {"name": "model"}},
            "metrics": {"type": {"schemaTitle": "kfp.Metrics"}, "metadata": {"name": "metrics"}},
        },
        {"output_parameter_one": "STRING", "output_parameter_two": "INT"},
        ["sh", "ec", "test"],
        "python:3.11",
    )
    assert fingerprint(key) == "b498530c9016917298999ec0b01f364a180f8a3862bea0fa672a383ca3f22e4e"
    other = cache_key(
        {"dataset": ["10"]},
        {},
        {},
        {"output_parameter": "DOUBLE"},
        ["sh", "ec", "run"],
        "python:3.11",
    )
    assert fingerprint(other) == "3d9a2a778fa3174c6cfc6e639c507c265b5f21ef6e5b1dd70b236462cc6da464"


@pytest.mark.parametrize(
    ("value", "text"),
    [(5.0, "5"), (1000, "1000"), (1e-4, "0.0001"), (1e-5, "0.00001"), (1e-7, "1e-7"), (0.5, "0.5")],
)
def test_numbers_are_formatted_as_go_does(value: float, text: str) -> None:
    assert go_float(value) == text


def test_unchanged_scheduled_runs_have_equal_keys_and_hit_the_cache(spec: dict[str, Any]) -> None:
    store = Store()
    first, second = walk(spec, store, 1), walk(spec, store, 2)
    assert first.keys == second.keys
    for step in CACHED_STEPS:
        keys = of(second, step)
        assert keys and all(keys.values()), step
        assert all(second.hits[path] for path in keys), step
    assert not any(first.hits.values())
    # A retried trainer, or the next run, finds the same folders under the checkpoint root.
    for step, kind in (("train-scratch", "scratch"), ("train-transfer", "transfer")):
        for path in of(second, step):
            folder = second.inputs[path]["checkpoint_dir"]
            assert folder == first.inputs[path]["checkpoint_dir"]
            assert re.fullmatch(rf"gs://bucket/checkpoints/{kind}-[0-9a-f]{{16}}", folder), folder


def test_a_changed_source_fingerprint_changes_the_keys_from_prepare_down(
    spec: dict[str, Any],
) -> None:
    store = Store()
    before = walk(spec, store, 1, source_fingerprint="f1")
    after = walk(spec, store, 2, source_fingerprint="f2")
    for step in (*CACHED_STEPS, "checkpoint-dirs"):
        keys = of(after, step)
        assert keys, step
        for path, key in keys.items():
            assert key != before.keys[path], path
            assert not after.hits[path], path
    # pick-better reads only the accuracies, which the (fake) evaluations repeat: a hit is fine.


def test_promote_and_deploy_are_never_cached(spec: dict[str, Any]) -> None:
    walked = walk(spec, Store(), 1)
    for step in ("promote", "export-and-deploy", "fingerprint-source", "retry-note"):
        keys = of(walked, step)
        assert keys, step  # the walk reached them (champion and serving URIs are set)
        assert set(keys.values()) == {None}, step


def test_another_image_digest_changes_every_key(spec: dict[str, Any], tmp_path: Path) -> None:
    other = compiled(tmp_path, OTHER_DIGEST)
    images = {e["container"]["image"] for e in other["deploymentSpec"]["executors"].values()}
    assert images == {OTHER_DIGEST}
    first, second = walk(spec, Store(), 1), walk(other, Store(), 1)
    assert first.keys.keys() == second.keys.keys()
    cached = {path for path, key in first.keys.items() if key is not None}
    assert len(cached) >= 8
    for path in cached:
        assert second.keys[path] != first.keys[path], path
