"""Run the pipeline's tasks inside the container image with kfp.local's ``DockerRunner``.

``catsdogs run --runner docker`` runs every task the way the cluster's pods do: from the image, with
the component's own command (``sh -ec ... python3 -m kfp.dsl.executor_main``), as the image's
non-root user (uid 1000, group 0) and with no network. The Docker API is the one ``DOCKER_HOST``
names; when it is unset and podman is installed, podman's Docker-compatible service is started on a
private socket for the run and stopped after it; otherwise Docker's default socket.

What still differs from the cluster (on top of the ``kfp.local`` differences in ``local_run.py``):

- artifacts are plain files: the pipeline root is a local folder bind-mounted into every task at the
  same path (the cluster's launcher downloads inputs from and uploads outputs to the pipeline root's
  bucket); local paths in ``source``, ``weights``, ``champion_uri`` and ``checkpoint_root`` are
  mounted the same way (the first two read-only), where the cluster needs ``gs://`` URIs;
- no GPU is passed into the containers, and the trainers do not require one;
- the folders a task writes must be writable by uid 1000 or group 0: they are made group-writable
  here, which covers a rootful engine; a rootless one maps uid 1000 to another host user;
- ``NVIDIA_VISIBLE_DEVICES`` and the driver mounts come from no device plugin;
- a task's exit status is read from its container, which is removed only after that (kfp 2.17's
  own code removes it on exit and can miss both the log and the status: see ``_run_container``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catsdogs.components.common.errors import SettingsError

if TYPE_CHECKING:
    from catsdogs.pipelines.parameters import RunParameters
    from kfp.dsl.graph_component import GraphComponent
    from kfp.local import DockerRunner

_IMAGE_VARIABLE = "CATSDOGS_IMAGE"
_GROUP_RWX = 0o070


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """Set one environment variable for the block, then restore it."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@contextlib.contextmanager
def podman_service(socket: Path, timeout_s: float = 30.0) -> Iterator[str]:
    """Podman's Docker-compatible API on ``socket`` as ``DOCKER_HOST`` for the block.

    Starts ``podman system service --time=0 unix://SOCKET`` in the background and stops it at the
    end of the block, whatever happens inside.

    Args:
        socket: Where the service listens; its folder must exist.
        timeout_s: How long to wait for the socket to appear.

    Yields:
        The ``unix://`` address, also set as ``DOCKER_HOST``.

    Raises:
        SettingsError: podman is not installed, or the service did not start.
    """
    podman = shutil.which("podman")
    if podman is None:
        raise SettingsError(
            "podman is not installed: install it (apt-get install podman) or set DOCKER_HOST to a "
            "running Docker API, e.g. unix:///var/run/docker.sock."
        )
    url = f"unix://{socket}"
    service = subprocess.Popen([podman, "system", "service", "--time=0", url])
    try:
        deadline = time.monotonic() + timeout_s
        while not socket.exists():
            if service.poll() is not None or time.monotonic() > deadline:
                raise SettingsError(
                    f"`podman system service {url}` did not start within {timeout_s:.0f}s "
                    f"(exit status {service.poll()}); run it by hand to see why, or set DOCKER_HOST."
                )
            time.sleep(0.1)
        with _environment("DOCKER_HOST", url):
            yield url
    finally:
        service.terminate()
        try:
            service.wait(timeout=10)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()


@contextlib.contextmanager
def docker_api() -> Iterator[str]:
    """The Docker API for the block: ``DOCKER_HOST``, else a podman service, else Docker's socket.

    Raises:
        SettingsError: Nothing answers at that address.
    """
    with contextlib.ExitStack() as stack:
        host = os.environ.get("DOCKER_HOST")
        if not host and shutil.which("podman"):
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="catsdogs-podman-"))
            host = stack.enter_context(podman_service(Path(folder) / "podman.sock"))
        host = host or "unix:///var/run/docker.sock"
        _ping(host)
        yield host


def _ping(host: str) -> None:
    """Raise SettingsError unless a Docker API answers at ``host`` (or the client is missing)."""
    try:
        import docker
    except ImportError as error:
        raise SettingsError(
            "--runner docker needs the Docker client library, which this install lacks: "
            "pip install -c requirements.lock 'catsdogs[docker]' (or `make install`)."
        ) from error

    try:
        client = docker.from_env()
        try:
            client.ping()
        finally:
            client.close()
    except docker.errors.DockerException as error:
        raise SettingsError(
            f"No Docker API answers at {host} ({error}); start Docker or install podman, or set "
            "DOCKER_HOST to a running Docker API."
        ) from error


def _is_local(value: str) -> bool:
    return bool(value) and "://" not in value and value not in ("imagenet", "none")


def _writable_by_the_image(folder: Path) -> None:
    """Create ``folder`` and let group 0 (the image user's group) write into it."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(folder.stat().st_mode | _GROUP_RWX)


def mounts(parameters: RunParameters) -> list[Any]:
    """Bind mounts, at the same path inside as outside, of the local paths the parameters name.

    The source and a weights file are read-only; the champion and checkpoint folders are created
    if missing and made writable for the image's user.
    """
    from docker.types import Mount

    result = []
    for path in (parameters.source, parameters.transfer_weights):
        if _is_local(path):
            result.append(Mount(target=path, source=path, type="bind", read_only=True))
    for path in (parameters.champion_uri, parameters.checkpoint_root):
        if _is_local(path):
            _writable_by_the_image(Path(path))
            result.append(Mount(target=path, source=path, type="bind"))
    return result


@contextlib.contextmanager
def docker_runner(
    image: str, pipeline_root: Path, parameters: RunParameters
) -> Iterator[DockerRunner]:
    """A ``DockerRunner`` for ``image`` on a live Docker API, for the block.

    Inside the block ``CATSDOGS_IMAGE`` is ``image``, so components imported (and pipelines built)
    there run from it; :func:`check_image` confirms that they do.

    Args:
        image: The image reference every task runs from (present in the engine, or pullable).
        pipeline_root: The local pipeline root; made writable for the image's user.
        parameters: The run's parameters, whose local paths are mounted into every task.

    Yields:
        The runner for ``kfp.local.init``: no network, the image's own user.
    """
    from kfp import local

    with docker_api(), _environment(_IMAGE_VARIABLE, image), _containers_kept_until_done():
        _writable_by_the_image(pipeline_root)
        yield local.DockerRunner(network_mode="none", mounts=mounts(parameters))


def _run_container(
    client: Any, image: str, command: list[str], volumes: dict[str, Any], **run_args: Any
) -> int:
    """Run one task's container: stream its log, return its exit status, then remove it.

    Stands in for kfp 2.17's ``docker_task_handler.run_docker_container``, which starts the
    container with ``auto_remove=True``: a task that exits before its log is attached is gone,
    podman then answers 500 (the run crashes) and Docker 404 (which kfp reads as success).
    """
    container = client.containers.run(
        image=image,
        command=command,
        volumes=volumes,
        detach=True,
        stdout=True,
        stderr=True,
        **run_args,
    )
    try:
        for line in container.logs(stream=True, follow=True):
            print(line.decode(errors="replace"), end="")
        return int(container.wait()["StatusCode"])
    finally:
        container.remove(force=True)


@contextlib.contextmanager
def _containers_kept_until_done() -> Iterator[None]:
    """Use :func:`_run_container` for kfp.local's Docker tasks in the block."""
    from kfp.local import docker_task_handler

    kfp_run = docker_task_handler.run_docker_container
    docker_task_handler.run_docker_container = _run_container
    try:
        yield
    finally:
        docker_task_handler.run_docker_container = kfp_run


def check_image(pipeline: GraphComponent, image: str) -> None:
    """Raise unless every task of ``pipeline`` runs from ``image``.

    Raises:
        RuntimeError: Some components were imported before ``CATSDOGS_IMAGE`` named ``image``.
    """
    from google.protobuf import json_format

    spec = json_format.MessageToDict(pipeline.pipeline_spec)
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    if images != {image}:
        raise RuntimeError(
            f"The pipeline's tasks run from {sorted(images)}, not {image!r}: build the pipeline "
            f"inside docker_runner(), before any component module is imported elsewhere."
        )
