"""Where each task of the cluster pipeline runs and what it requests, from the compile options.

``on_gpu`` (train, evaluate, render): accelerators, CPU, memory, retries with backoff, node
selector, tolerations and a disk of its own; ``on_cpu`` (prepare, promote, deploy): CPU, memory and
the disk. ``PipelineOptions(local=True)`` (kfp.local) leaves all of it out.

The disk: the 2.17 SDK and IR have no ephemeral-storage request (``PipelineTask`` sets CPU, memory
and accelerators only, and the driver's pod spec patch carries nothing else:
backend/src/v2/driver/container.go + k8s.go, tag 2.17.0), so each task gets a generic ephemeral
volume (kfp-kubernetes ``add_ephemeral_volume``: a PVC with a storage request, made and deleted with
the pod) at ``/scratch`` and points ``TMPDIR`` and ``CATSDOGS_CACHE`` at it. What KFP's launcher
downloads (input artifacts under ``/gcs``, ``/s3``, ``/minio``) stays in the node-disk ``emptyDir``
volumes the backend adds (argocompiler/container.go); docs/cluster.md says what to size for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from catsdogs.pipelines.options import PipelineOptions

if TYPE_CHECKING:
    from kfp.dsl import PipelineTask

# Where each cluster task's own disk is mounted: TMPDIR and the cache.
SCRATCH_PATH = "/scratch"


def light(func: Any) -> Any:
    """Make a lightweight component of a module-level function, on our image."""
    from catsdogs.components.common import config
    from kfp import dsl

    return dsl.component(base_image=config.image(), install_kfp_package=False)(func)


def run_guards(options: PipelineOptions) -> Any:
    """The run's workflow TTL and deadline (KFP 2.17's PipelineConfig; 0 leaves one out)."""
    from kfp import dsl

    return dsl.PipelineConfig(
        ttl_seconds_after_finished=options.workflow_ttl_seconds or None,
        active_deadline_seconds=options.active_deadline_seconds or None,
    )


def named(task: PipelineTask, name: str, opts: PipelineOptions) -> PipelineTask:
    """The task's display name, s3:// and tracking settings (kfp.local warns that names do nothing)."""
    if opts.local:
        return task
    opts.add_storage_env(task)  # s3:// endpoint and credentials, when compiled with them
    for variable, value in opts.environment():  # tracking (docs/tracking.md)
        task.set_env_variable(variable, value)
    return task.set_display_name(name)


def with_scratch(task: PipelineTask, opts: PipelineOptions) -> None:
    """A disk of its own for what the task writes, of ``opts.scratch_storage`` ("0": none)."""
    from kfp import kubernetes

    if opts.scratch_storage == "0":
        return
    kubernetes.add_ephemeral_volume(
        task,
        volume_name="scratch",
        mount_path=SCRATCH_PATH,
        access_modes=["ReadWriteOnce"],
        size=opts.scratch_storage,
    )
    task.set_env_variable("TMPDIR", SCRATCH_PATH)
    task.set_env_variable("CATSDOGS_CACHE", f"{SCRATCH_PATH}/cache")


def on_gpu(task: PipelineTask, name: str, opts: PipelineOptions) -> PipelineTask:
    """Accelerators, CPU, memory, retries, placement and a disk for a GPU task."""
    from kfp import kubernetes

    named(task, name, opts)
    if opts.local:
        return task
    task.set_accelerator_type(opts.accelerator_type)
    task.set_accelerator_limit(opts.accelerator_count)
    task.set_cpu_request(opts.gpu_cpu_request)
    task.set_memory_request(opts.gpu_memory_request)
    task.set_retry(
        num_retries=opts.retries,
        backoff_duration=opts.backoff_duration,
        backoff_factor=opts.backoff_factor,
        backoff_max_duration=opts.backoff_max_duration,
    )
    with_scratch(task, opts)
    for label, value in opts.node_selector:
        kubernetes.add_node_selector(task, label_key=label, label_value=value)
    for toleration in opts.tolerations:
        kubernetes.add_toleration(
            task,
            key=toleration.key,
            operator="Equal" if toleration.value else "Exists",
            value=toleration.value or None,
            effect=toleration.effect,  # type: ignore[arg-type]
        )
    return task


def on_cpu(task: PipelineTask, name: str, opts: PipelineOptions) -> PipelineTask:
    """CPU, memory and a disk for a CPU task."""
    named(task, name, opts)
    if not opts.local:
        task.set_cpu_request(opts.cpu_request)
        task.set_memory_request(opts.memory_request)
        with_scratch(task, opts)
    return task
