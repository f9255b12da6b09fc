"""The compiled pipeline: golden YAML, GPU requests, retries, pinned image, no secrets, defaults."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from catsdogs.cli.app import app
from catsdogs.components.common import config
from catsdogs.components.common.errors import SettingsError
from catsdogs.pipelines import steps
from catsdogs.pipelines.compile import check_image, compile_pipeline
from catsdogs.pipelines.options import PipelineOptions, Toleration, parse_node_selector
from catsdogs.pipelines.parameters import RunParameters
from typer.testing import CliRunner

GOLDEN = Path(__file__).parent / "golden" / "pipeline.yaml"
GPU_COMPONENTS = ("train-scratch", "train-transfer", "evaluate", "render-activations")
IGNORED = {"image", "sdkVersion"}


def load(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pipeline spec and the Kubernetes platform spec (empty when none)."""
    docs = list(yaml.safe_load_all(path.read_text()))
    platform = docs[1]["platforms"]["kubernetes"] if len(docs) > 1 else docs[0].get("platforms")
    return docs[0], (platform or {}).get("deploymentSpec", {})


def strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k not in IGNORED}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_pipeline(tmp_path_factory.mktemp("compiled") / "pipeline.yaml")


def executors_of(spec: dict[str, Any], component: str) -> list[dict[str, Any]]:
    """Container specs of every executor of a component (``-2``, ``-3`` ... copies too)."""
    pattern = re.compile(rf"^exec-{component}(-\d+)?$")
    found = [
        e["container"]
        for name, e in spec["deploymentSpec"]["executors"].items()
        if pattern.match(name)
    ]
    assert found, f"no executor for {component}"
    return found


def tasks_of(spec: dict[str, Any], component: str) -> list[dict[str, Any]]:
    """Every task, in any sub-DAG, that runs the component."""
    pattern = re.compile(rf"^comp-{component}(-\d+)?$")
    dags = [spec["root"]] + [c for c in spec["components"].values() if "dag" in c]
    return [
        task
        for dag in dags
        for task in dag["dag"]["tasks"].values()
        if pattern.match(task["componentRef"]["name"])
    ]


def body_tasks(spec: dict[str, Any]) -> dict[str, Any]:
    """The pipeline's top-level tasks: inside the exit handler's group when there is one."""
    handler = spec["components"].get("comp-exit-handler-1")
    return dict((handler or spec["root"])["dag"]["tasks"])


def test_compiled_spec_matches_golden(compiled: Path) -> None:
    assert GOLDEN.exists(), "no golden file: run `make golden`"
    got = [strip(d) for d in yaml.safe_load_all(compiled.read_text())]
    want = [strip(d) for d in yaml.safe_load_all(GOLDEN.read_text())]
    diff = difflib.unified_diff(
        yaml.safe_dump_all(want).splitlines(), yaml.safe_dump_all(got).splitlines(), lineterm=""
    )
    assert got == want, (
        "The compiled pipeline differs from tests/golden/pipeline.yaml; if the change is "
        "intended (a component's code is embedded in the spec too), run `make golden` and "
        "review the diff:\n" + "\n".join(list(diff)[:60])
    )


def test_gpu_tasks_request_one_gpu_cpu_memory_and_retry(compiled: Path) -> None:
    spec, _ = load(compiled)
    for component in GPU_COMPONENTS:
        for container in executors_of(spec, component):
            resources = container["resources"]
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
            assert str(resources["accelerator"]["resourceCount"]) == "1"
            assert resources["resourceCpuRequest"] == "4"
            assert resources["resourceMemoryRequest"] == "16G"
        for task in tasks_of(spec, component):
            policy = task["retryPolicy"]
            assert policy["maxRetryCount"] == 3
            assert policy["backoffDuration"] == "60s"
            assert policy["backoffFactor"] == 2.0
            # Argo counts the maximum from the first attempt and parses the factor as an integer.
            assert int(policy["backoffMaxDuration"].removesuffix("s")) >= 24 * 3600
            assert float(policy["backoffFactor"]).is_integer()
    for container in executors_of(spec, "prepare-dataset"):
        assert "accelerator" not in container.get("resources", {})
        assert container["resources"]["resourceMemoryRequest"] == "8G"
    trainers = tasks_of(spec, "train-scratch") + tasks_of(spec, "train-transfer")
    assert len(trainers) == 4  # both-trainers branch + one single-trainer branch each
    for task in trainers:
        assert task["inputs"]["parameters"]["require_gpu"]["runtimeValue"]["constant"] is True


def test_s3_endpoint_and_secret_reach_every_step_only_when_compiled_with_them(
    tmp_path: Path, compiled: Path
) -> None:
    """MinIO/S3 clusters: boto3's variables in every executor (KFP's MinIO Secret by default keys)."""
    options = PipelineOptions(
        s3_endpoint="http://minio-service.kubeflow:9000", s3_secret="mlpipeline-minio-artifact"
    )
    spec, platform = load(compile_pipeline(tmp_path / "p.yaml", options))
    executors = spec["deploymentSpec"]["executors"]
    assert len(executors) >= 8
    for name, executor in executors.items():
        env = {e["name"]: e["value"] for e in executor["container"].get("env", [])}
        assert env.get("AWS_ENDPOINT_URL") == "http://minio-service.kubeflow:9000", name
        (secret,) = platform["executors"][name]["secretAsEnv"]
        assert secret["secretName"] == "mlpipeline-minio-artifact" and not secret["optional"], name
        assert secret["keyToEnv"] == [
            {"secretKey": "accesskey", "envVar": "AWS_ACCESS_KEY_ID"},
            {"secretKey": "secretkey", "envVar": "AWS_SECRET_ACCESS_KEY"},
        ], name
    assert "AWS_" not in compiled.read_text()  # the default (golden) pipeline carries none
    for bad, message in (
        ({"s3_endpoint": "minio:9000"}, "http"),
        ({"s3_secret": "My_S"}, "Secret"),
    ):
        with pytest.raises(SettingsError, match=message):
            PipelineOptions(**bad)


def test_accelerator_node_selector_and_toleration_are_overridable(tmp_path: Path) -> None:
    options = PipelineOptions(
        accelerator_type="amd.com/gpu",
        accelerator_count=2,
        node_selector=parse_node_selector(["cloud.google.com/gke-accelerator=nvidia-l4"]),
        tolerations=(Toleration.parse("nvidia.com/gpu=present:NoSchedule"),),
        retries=1,
    )
    spec, platform = load(compile_pipeline(tmp_path / "p.yaml", options))
    for container in executors_of(spec, "train-transfer"):
        assert container["resources"]["accelerator"]["resourceType"] == "amd.com/gpu"
        assert str(container["resources"]["accelerator"]["resourceCount"]) == "2"
    assert all(t["retryPolicy"]["maxRetryCount"] == 1 for t in tasks_of(spec, "evaluate"))
    gpu_execs = [n for n in platform["executors"] if n.startswith("exec-render-activations")]
    assert gpu_execs
    for name in gpu_execs:
        kube = platform["executors"][name]
        assert kube["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
        assert kube["tolerations"] == [
            {
                "key": "nvidia.com/gpu",
                "operator": "Equal",
                "value": "present",
                "effect": "NoSchedule",
            }
        ]
    prepare = [e for n, e in platform["executors"].items() if n.startswith("exec-prepare-dataset")]
    assert prepare and not any("nodeSelector" in e or "tolerations" in e for e in prepare)


def test_image_is_pinned_everywhere(compiled: Path) -> None:
    spec, _ = load(compiled)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {config.image()}
    check_image(config.image())


@pytest.mark.parametrize(
    "image",
    [
        "ghcr.io/x/catsdogs-gpu:latest",
        "ghcr.io/x/catsdogs-gpu",
        "localhost:5000/catsdogs",
        "catsdogs@sha256:abc",
    ],
)
def test_unpinned_images_are_refused(image: str) -> None:
    with pytest.raises(SettingsError, match="not pinned|malformed digest"):
        check_image(image)


@pytest.mark.parametrize(
    "image",
    ["ghcr.io/x/catsdogs-gpu:0.1.0", "localhost:5000/catsdogs:1.2", "r/c@sha256:" + "a" * 64],
)
def test_pinned_images_pass(image: str) -> None:
    assert check_image(image) == image


def test_compile_cli_refuses_latest(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CATSDOGS_IMAGE", "ghcr.io/x/catsdogs-gpu:latest")
    result = CliRunner().invoke(app, ["compile", "--output", str(tmp_path / "p.yaml")])
    assert result.exit_code == 2
    assert "not pinned" in result.output
    assert not (tmp_path / "p.yaml").exists()


def test_compile_cli_writes_overrides(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "p.yaml"
    result = CliRunner().invoke(
        app,
        [
            "compile",
            "--allow-tag",
            "--output",
            str(out),
            "--accelerator-type",
            "nvidia.com/mig-1g.10gb",
            "--node-selector",
            "pool=gpu",
            "--toleration",
            "nvidia.com/gpu",
        ],
    )
    assert result.exit_code == 0, result.output
    spec, platform = load(out)
    assert executors_of(spec, "train-scratch")[0]["resources"]["accelerator"]["resourceType"] == (
        "nvidia.com/mig-1g.10gb"
    )
    kube = platform["executors"]["exec-train-scratch"]
    assert kube["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    bad = CliRunner().invoke(app, ["compile", "--output", str(out), "--node-selector", "pool"])
    assert bad.exit_code == 2
    assert "label=value" in bad.output


def test_no_secret_is_a_pipeline_parameter(compiled: Path) -> None:
    spec, _ = load(compiled)
    names = list(spec["root"]["inputDefinitions"]["parameters"])
    assert "source" in names
    secret = re.compile(r"pass(word)?|token|secret|key|credential|auth", re.IGNORECASE)
    assert [n for n in names if secret.search(n)] == []


def test_fingerprint_is_never_cached_and_feeds_prepare(compiled: Path) -> None:
    spec, _ = load(compiled)
    tasks = body_tasks(spec)
    assert tasks["fingerprint-source"]["cachingOptions"].get("enableCache", False) is False
    assert tasks["prepare-dataset"]["cachingOptions"]["enableCache"] is True
    fingerprint = tasks["prepare-dataset"]["inputs"]["parameters"]["source_fingerprint"]
    assert fingerprint["taskOutputParameter"]["producerTask"] == "fingerprint-source"


FOLDER_INPUTS = {
    "checkpoint_root": "gs://b/ckpt/",
    "image": "r/catsdogs@sha256:" + "a" * 64,
    "source": "gs://b/raw",
    "source_fingerprint": "f1",
    "train_per_class": 1000,
    "val_per_class": 500,
    "test_per_class": 500,
    "seed": 1337,
    "batch_size": 32,
    "scratch_epochs": 100,
    "scratch_learning_rate": 1e-4,
    "scratch_architecture": "seed",
    "scratch_augmentation": "seed",
    "scratch_steps_per_epoch": 0,
    "transfer_backbone": "vgg16",
    "transfer_weights": "imagenet",
    "transfer_mode": "features",
    "transfer_epochs": 30,
}


def test_checkpoint_folders_are_named_from_what_decides_the_training(compiled: Path) -> None:
    spec, _ = load(compiled)
    step = body_tasks(spec)["checkpoint-dirs"]["inputs"]["parameters"]
    assert set(step) == set(FOLDER_INPUTS)
    assert all("{{$." not in str(value) for value in step.values())  # no run id, no run name
    assert step["source_fingerprint"]["taskOutputParameter"]["producerTask"] == "fingerprint-source"
    assert step["image"]["runtimeValue"]["constant"] == config.image()
    for task in tasks_of(spec, "train-scratch") + tasks_of(spec, "train-transfer"):
        source = task["inputs"]["parameters"]["checkpoint_dir"]["componentInputParameter"]
        assert source == "checkpoint_dir"
    assert steps.checkpoint_dirs(**dict(FOLDER_INPUTS, checkpoint_root="")) == ("", "")
    scratch, transfer = steps.checkpoint_dirs(**FOLDER_INPUTS)
    assert re.fullmatch(r"gs://b/ckpt/scratch-[0-9a-f]{16}", scratch)
    assert re.fullmatch(r"gs://b/ckpt/transfer-[0-9a-f]{16}", transfer)
    assert steps.checkpoint_dirs(**FOLDER_INPUTS) == (scratch, transfer)
    for name, other in (
        ("source_fingerprint", "f2"),
        ("image", "r/catsdogs@sha256:" + "b" * 64),
        ("seed", 7),
        ("batch_size", 16),
    ):
        changed = steps.checkpoint_dirs(**dict(FOLDER_INPUTS, **{name: other}))
        assert changed[0] != scratch and changed[1] != transfer, name
    # A trainer's own parameters move only its own folder.
    changed = steps.checkpoint_dirs(**dict(FOLDER_INPUTS, scratch_learning_rate=1e-3))
    assert changed == (changed[0], transfer) and changed[0] != scratch
    changed = steps.checkpoint_dirs(**dict(FOLDER_INPUTS, transfer_epochs=5))
    assert changed == (scratch, changed[1]) and changed[1] != transfer


@pytest.mark.slow
def test_a_retried_trainer_resumes_from_the_folder_its_inputs_name(
    tiny_dataset, tmp_path: Path
) -> None:
    """The resume test (SIGKILL mid-training, run again) with the pipeline's folder naming.

    Each attempt names its folder afresh from the same inputs, as a retried task's checkpoint-dirs
    input does, and writes to a new output (a retried pod gets new output URIs from the driver).
    """
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    data = tiny_dataset(per_class=8, size=48)
    inputs = dict(FOLDER_INPUTS, checkpoint_root=str(tmp_path / "checkpoints"), scratch_epochs=25)

    def attempt(n: int) -> list[str]:
        folder = steps.checkpoint_dirs(**inputs).scratch
        return [
            sys.executable, "-m", "catsdogs.cli", "train-scratch", "--data", data,
            "--output", str(tmp_path / f"attempt-{n}"), "--epochs", "25", "--batch-size", "4",
            "--image-size", "48", "--checkpoint-dir", folder,
        ]  # fmt: skip

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    state = Path(steps.checkpoint_dirs(**inputs).scratch) / "state.json"
    process = subprocess.Popen(
        attempt(1), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        if state.exists() and json.loads(state.read_text())["epoch"] >= 1:
            break
        time.sleep(0.02)
    assert process.poll() is None, "training finished before it could be killed; raise epochs"
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    killed_at = json.loads(state.read_text())["epoch"]
    assert 1 <= killed_at < 25
    retried = subprocess.run(attempt(2), capture_output=True, text=True, env=env, timeout=180)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    resumed = [
        line for line in retried.stdout.splitlines() if line.startswith("Resumed from epoch")
    ]
    assert len(resumed) == 1 and int(resumed[0].split()[3]) >= killed_at
    assert "Epoch 1/25" not in retried.stdout and "Epoch 25/25" in retried.stdout
    assert (tmp_path / "attempt-2" / "model.keras").is_file()


def test_local_build_requests_nothing_and_never_requires_gpu(tmp_path: Path) -> None:
    from catsdogs.pipelines.pipeline import build_pipeline
    from kfp import compiler

    path = tmp_path / "local.yaml"
    compiler.Compiler().compile(build_pipeline(PipelineOptions(local=True)), str(path))
    spec, platform = load(path)
    assert platform == {}
    for executor in spec["deploymentSpec"]["executors"].values():
        assert "resources" not in executor["container"]
    for task in tasks_of(spec, "train-scratch") + tasks_of(spec, "train-transfer"):
        assert task["inputs"]["parameters"]["require_gpu"]["runtimeValue"]["constant"] is False
        assert "retryPolicy" not in task


def test_the_pipeline_and_the_cli_derive_from_the_one_parameter_definition(
    compiled: Path,
) -> None:
    """pipelines/parameters.py defines each parameter once; the spec and three commands derive."""
    import typer
    from catsdogs.pipelines import parameters

    spec, _ = load(compiled)
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    defined = {item.name: item for item in parameters.fields()}
    assert list(inputs) == sorted(defined)  # KFP sorts the inputs
    kfp_types = {str: "STRING", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE"}
    for name, item in defined.items():
        assert inputs[name]["parameterType"] == kfp_types[item.type], name
        assert inputs[name]["description"] == parameters.description(item), name
        if name != "source":
            assert inputs[name]["defaultValue"] == item.default, name
    assert "defaultValue" not in inputs["source"]
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for command in (commands["run"], commands["submit"], commands["schedule"].commands["create"]):
        options = {param.name: param for param in command.params}
        for name, item in defined.items():
            option = options[name]
            assert option.opts == [f"--{name.replace('_', '-')}"], (command.name, name)
            if name == "source":
                assert option.required
                continue
            assert getattr(option.default, "value", option.default) == item.default, name
            annotation = option.type_descriptor.annotation
            choices = tuple(member.value for member in annotation) if item.choices else ()
            assert choices == item.choices, (command.name, name)
            if not item.choices:
                assert annotation is item.type, (command.name, name)
    # Names say whose they are: nothing trainer-specific without its trainer's prefix.
    assert {"learning_rate", "backbone", "weights"}.isdisjoint(defined)
    assert {"scratch_learning_rate", "transfer_backbone", "transfer_weights"} <= set(defined)


def test_options_are_validated() -> None:
    with pytest.raises(SettingsError, match="accelerator_count must be between 1 and 16, got 0"):
        PipelineOptions(accelerator_count=0)
    with pytest.raises(SettingsError, match="gpu_memory_request must be a Kubernetes quantity"):
        PipelineOptions(gpu_memory_request="lots")
    with pytest.raises(SettingsError, match="toleration effect"):
        Toleration.parse("a=b:Sometimes")
    with pytest.raises(SettingsError, match="trainers must be one of both, scratch, transfer"):
        RunParameters(source="x", trainers="all")
    with pytest.raises(SettingsError, match="scratch_epochs must be at least 1"):
        RunParameters(source="x", scratch_epochs=0)


def test_steps(tmp_path: Path) -> None:
    from catsdogs.components.prepare_dataset import core

    (tmp_path / "cat.1.jpg").write_bytes(b"x")
    assert steps.fingerprint_source(str(tmp_path), "both") == core.source_fingerprint(str(tmp_path))
    with pytest.raises(ValueError, match="got 'all'"):
        steps.fingerprint_source(str(tmp_path), "all")
    assert steps.pick_better(0.8, 0.9) == "transfer"
    assert steps.pick_better(0.9, 0.8) == "scratch"
    assert steps.pick_better(0.85, 0.85) == "scratch"


def test_compile_cli_defaults_equal_options_defaults() -> None:
    from catsdogs.cli import package as cli

    params = inspect.signature(cli.compile_command).parameters
    defaults = PipelineOptions()
    for name in ("accelerator_type", "accelerator_count", "retries", "backoff_max_duration"):
        assert params[name].default == getattr(defaults, name), name
    assert params["scratch_storage"].default == defaults.scratch_storage
    assert params["workflow_ttl"].default == defaults.workflow_ttl_seconds
    assert params["active_deadline"].default == defaults.active_deadline_seconds
    assert params["retry_note"].default is defaults.retry_note


def test_component_literals_equal_the_settings() -> None:
    """The KFP wrappers restate defaults as literals (KFP needs them): the one check they match."""
    from catsdogs.components.prepare_dataset.component import prepare_dataset
    from catsdogs.components.prepare_dataset.settings import PrepareSettings
    from catsdogs.components.promote.component import promote
    from catsdogs.components.promote.core import PromoteSettings
    from catsdogs.components.render_activations import core as render
    from catsdogs.components.render_activations.component import render_activations
    from catsdogs.components.train_scratch.component import train_scratch
    from catsdogs.components.train_scratch.core import ScratchSettings
    from catsdogs.components.train_transfer.component import train_transfer
    from catsdogs.components.train_transfer.settings import TransferSettings

    as_setting = {"channels": render.parse_channels}  # a KFP string for a tuple
    for component, settings in (
        (prepare_dataset, PrepareSettings),
        (train_scratch, ScratchSettings),
        (train_transfer, TransferSettings),
        (promote, PromoteSettings),
        (render_activations, render.RenderSettings),
    ):
        fields = {field.name: field.default for field in dataclasses.fields(settings)}
        literals = {
            name: parameter.default
            for name, parameter in inspect.signature(component.python_func).parameters.items()
            if parameter.default is not inspect.Parameter.empty and name in fields
        }
        assert literals, component.name
        for name, literal in literals.items():
            value = as_setting.get(name, lambda x: x)(literal)
            assert value == fields[name], (component.name, name)


@pytest.mark.parametrize(
    "accelerator", ["NVIDIA_L4", "NVIDIA_TESLA_T4", "gpu", "Nvidia.com/gpu", "nvidia.com/", ""]
)
def test_accelerator_must_be_a_kubernetes_resource_name(accelerator: str) -> None:
    # The driver writes the type verbatim as a pod limit: Kubernetes refuses anything else.
    with pytest.raises(SettingsError, match="Kubernetes extended resource name") as error:
        PipelineOptions(accelerator_type=accelerator)
    assert "nvidia.com/gpu" in str(error.value)
    assert "--node-selector cloud.google.com/gke-accelerator=nvidia-l4" in str(error.value)


@pytest.mark.parametrize("accelerator", ["nvidia.com/gpu", "amd.com/gpu", "gpu.intel.com/i915"])
def test_kubernetes_resource_names_are_accepted(accelerator: str) -> None:
    assert PipelineOptions(accelerator_type=accelerator).accelerator_type == accelerator


def test_compile_cli_refuses_a_gpu_model_as_accelerator(tmp_path: Path) -> None:
    out = tmp_path / "p.yaml"
    result = CliRunner().invoke(
        app, ["compile", "--output", str(out), "--accelerator-type", "NVIDIA_L4"]
    )
    assert result.exit_code == 2
    assert "nvidia.com/gpu" in result.output
    assert "cloud.google.com/gke-accelerator=nvidia-l4" in result.output
    assert not out.exists()


def test_retry_window_is_a_compile_option_and_the_factor_a_whole_number(tmp_path: Path) -> None:
    out = tmp_path / "p.yaml"
    result = CliRunner().invoke(
        app,
        [
            "compile",
            "--allow-tag",
            "--output",
            str(out),
            "--backoff-max-duration",
            "172800s",
            "--active-deadline",
            "259200",
        ],
    )
    assert result.exit_code == 0, result.output
    spec, _ = load(out)
    for task in tasks_of(spec, "train-transfer"):
        assert task["retryPolicy"]["backoffMaxDuration"] == "172800s"
    with pytest.raises(SettingsError, match="backoff_factor must be a whole number"):
        PipelineOptions(backoff_factor=1.5)  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="backoff_max_duration must be whole seconds"):
        PipelineOptions(backoff_max_duration="1 day")


def test_every_root_parameter_has_a_description(compiled: Path) -> None:
    """The KFP UI's run form shows these; they come from the pipeline's docstring."""
    spec, _ = load(compiled)
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    missing = [name for name, p in parameters.items() if not p.get("description", "").strip()]
    assert missing == []
    assert "gs://" in parameters["champion_uri"]["description"]


# ------------------------------------------------------------------------------ issue 20


def test_a_cluster_compile_refuses_a_bare_tag_and_allows_it_loudly(tmp_path: Path) -> None:
    out = tmp_path / "p.yaml"
    assert "@" not in config.image()  # the default reference is a tag
    refused = CliRunner().invoke(app, ["compile", "--output", str(out)])
    assert refused.exit_code == 2
    assert "is a tag, not a digest" in refused.output and "--allow-tag" in refused.output
    assert "build/image.ref" in refused.output
    assert not out.exists()
    allowed = CliRunner().invoke(app, ["compile", "--output", str(out), "--allow-tag"])
    assert allowed.exit_code == 0, allowed.output
    assert "WARNING: the component image" in allowed.output and out.is_file()
    with pytest.raises(SettingsError, match="is a tag, not a digest"):
        check_image("ghcr.io/x/catsdogs-gpu:0.1.0", require_digest=True)
    digest = "ghcr.io/x/catsdogs-gpu:0.1.0@sha256:" + "c" * 64
    assert check_image(digest, require_digest=True) == digest


def test_the_golden_file_shows_the_image_by_digest() -> None:
    spec, _ = load(GOLDEN)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert len(images) == 1
    assert re.fullmatch(r"[^@\s]+:[0-9.]+@sha256:[0-9a-f]{64}", images.pop()), "run `make golden`"


def test_run_guards_and_scratch_disks_are_compile_options(compiled: Path, tmp_path: Path) -> None:
    _, platform = load(compiled)
    docs = list(yaml.safe_load_all(compiled.read_text()))
    config_ = docs[1]["platforms"]["kubernetes"]["pipelineConfig"]
    assert config_ == {"activeDeadlineSeconds": 172800, "resourceTtlOnCompletion": 604800}
    spec, _ = load(compiled)
    heavy = (*GPU_COMPONENTS, "prepare-dataset", "promote", "export-and-deploy")
    for component in heavy:
        for name, executor in spec["deploymentSpec"]["executors"].items():
            if not re.fullmatch(rf"exec-{component}(-\d+)?", name):
                continue
            (volume,) = platform["executors"][name]["genericEphemeralVolume"]
            assert volume["size"] == "4Gi" and volume["mountPath"] == "/scratch", name
            env = {e["name"]: e["value"] for e in executor["container"]["env"]}
            assert env == {"TMPDIR": "/scratch", "CATSDOGS_CACHE": "/scratch/cache"}, name
    options = PipelineOptions(
        scratch_storage="0", workflow_ttl_seconds=0, active_deadline_seconds=3 * 86400
    )
    path = compile_pipeline(tmp_path / "p.yaml", options)
    other = list(yaml.safe_load_all(path.read_text()))[1]["platforms"]["kubernetes"]
    assert other["pipelineConfig"] == {"activeDeadlineSeconds": 3 * 86400}
    assert not any(
        "genericEphemeralVolume" in e
        for e in other.get("deploymentSpec", {}).get("executors", {}).values()
    )
    with pytest.raises(SettingsError, match="must be longer than the retry window"):
        PipelineOptions(active_deadline_seconds=3600)
    with pytest.raises(SettingsError, match="scratch_storage must be a Kubernetes quantity"):
        PipelineOptions(scratch_storage="lots")
    with pytest.raises(SettingsError, match="workflow_ttl_seconds must be whole seconds"):
        PipelineOptions(workflow_ttl_seconds=-1)


def test_the_retry_note_is_an_exit_handler_that_names_the_retry_command(
    compiled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from catsdogs.pipelines.retry_note import retry_note
    from kfp.dsl import PipelineTaskFinalStatus

    spec, _ = load(compiled)
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"exit-handler-1", "retry-note"}
    note = root["retry-note"]
    assert note["inputs"]["parameters"]["status"]["taskFinalStatus"]["producerTask"] == (
        "exit-handler-1"
    )
    assert note["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert note["cachingOptions"].get("enableCache", False) is False  # it takes the run id
    failed = PipelineTaskFinalStatus(
        state="FAILED",
        pipeline_job_resource_name="catsdogs-x",
        pipeline_task_name="exit-handler-1",
        error_code=None,
        error_message="pod deleted",
    )
    text = retry_note(failed, "run-7")
    assert "catsdogs runs retry run-7" in text and "(pod deleted)" in text
    assert retry_note(dataclasses.replace(failed, state="COMPLETE"), "run-7") == ""
    assert "nothing to retry" in capsys.readouterr().out
    path = compile_pipeline(tmp_path / "p.yaml", PipelineOptions(retry_note=False))
    spec, _ = load(path)
    assert "retry-note" not in spec["root"]["dag"]["tasks"]
    assert "fingerprint-source" in body_tasks(spec) == spec["root"]["dag"]["tasks"]


@pytest.mark.parametrize("name", ["scratch_branch", "transfer_branch", "finish"])
def test_each_sub_pipeline_compiles_and_reads_alone(name: str, tmp_path: Path) -> None:
    from catsdogs.pipelines import branches
    from kfp import compiler

    path = tmp_path / f"{name}.yaml"
    compiler.Compiler().compile(getattr(branches, name)(PipelineOptions()), str(path))
    spec, platform = load(path)
    tasks = spec["root"]["dag"]["tasks"]
    if name == "finish":
        assert "render-activations" in tasks and "condition-1" in tasks
        inputs = set(spec["root"]["inputDefinitions"]["parameters"])
        assert inputs == {"champion_uri", "margin", "serving_uri", "service_name"}
    else:
        assert set(tasks) == {name.replace("_branch", "").replace("scratch", "train-scratch")
                              .replace("transfer", "train-transfer"), "evaluate"}  # fmt: skip
        outputs = spec["root"]["outputDefinitions"]
        assert set(outputs["artifacts"]) == {"model", "evaluation"}
        assert set(outputs["parameters"]) == {"accuracy"}
        assert platform["executors"]  # placed: the GPU tasks' disks
