"""The one ``@dsl.pipeline``: prepare -> train (scratch, transfer) -> evaluate -> render -> promote.

The graph, in words::

    fingerprint_source (never cached)        cheap fingerprint of the source + parameter check
      -> prepare_dataset(source_fingerprint) the fingerprint is a cache-key input: new data, new key
    checkpoint_dirs(root, data, trainer parameters, image)  folders named from what decides the
                                             training: a retried trainer resumes, an unchanged
                                             scheduled run keeps its cache keys
      -> trainers == "both":     scratch branch | transfer branch -> pick_better -> finish(better)
         trainers == "scratch":  scratch branch -> finish
         trainers == "transfer": transfer branch -> finish
    branch = train_* -> evaluate          (sub-pipelines in pipelines/branches.py, reused)
    finish = render_activations -> promote when champion_uri is not empty (never cached)
    on a cluster, all of it inside an exit handler: retry_note says how to retry a failed run

KFP forbids a task outside a ``dsl.If`` from reading an output made inside it, so "render the better
of the models that ran" is written as one ``dsl.If``/``dsl.Elif`` group on ``trainers`` whose
branches reuse the two training sub-pipelines and the ``finish`` sub-pipeline; the compiler emits a
copy of ``finish`` per call (``comp-finish`` to ``comp-finish-4``). ``dsl.OneOf`` would let one
``finish`` read the single-trainer branches' model, but kfp 2.17's local runner resolves only
parameter outputs of a ``dsl.OneOf``, not artifacts (``Expected 1 artifact in
ArtifactSelectorSpec``), so ``catsdogs run`` could not run it; and a ``both`` run picks between two
models that both exist, which ``dsl.OneOf`` cannot express (its inputs must be made inside the
branches).

Everything that trains, extracts features, evaluates or renders requests GPUs, CPU and memory and
retries with backoff (spot preemption); trainers get ``require_gpu=True`` so a pod scheduled without
a GPU fails at once. The backend turns the retry policy into Argo's ``retryStrategy.backoff``, whose
``maxDuration`` counts from the first attempt: the SDK's default of 3600s would never retry a
trainer pre-empted after an hour, so the maximum defaults to 24 h (``backoff_max_duration``), and
the factor is a whole number because Argo parses it as one. The accelerator type is written by the
driver verbatim as a pod resource limit, so it must be a Kubernetes resource name
(``nvidia.com/gpu``); the GPU model is chosen with a node selector (``pipelines/placement.py``).
A cluster run also gets a TTL and a deadline (``PipelineConfig``) and a disk per task.
:class:`PipelineOptions` with ``local=True`` leaves all of that out, for ``kfp.local`` on a laptop
(see ``pipelines/local_run.py``).

kfp is imported inside functions (house rule: importing this module stays cheap). No
``from __future__ import annotations``: KFP reads the sub-pipelines' annotations as objects.
"""

import contextlib
import functools
import types
from typing import TYPE_CHECKING, Any

from catsdogs.pipelines import parameters, placement
from catsdogs.pipelines.options import PipelineOptions

if TYPE_CHECKING:
    from kfp.dsl.graph_component import GraphComponent

PIPELINE_NAME = "catsdogs"
DESCRIPTION = "Dogs vs cats: prepare, train from scratch and by transfer, evaluate, render."


def build_pipeline(options: PipelineOptions | None = None) -> "GraphComponent":
    """Build the pipeline for the given compile-time options.

    Args:
        options: Resources, placement and retries; ``PipelineOptions(local=True)`` for kfp.local.

    Returns:
        The ``@dsl.pipeline`` graph component, ready to compile or to call under ``kfp.local``.
    """
    from catsdogs.components.common import config
    from catsdogs.components.prepare_dataset.component import prepare_dataset
    from catsdogs.pipelines import branches, steps
    from kfp import dsl

    opts = options or PipelineOptions()
    fingerprint_op = placement.light(steps.fingerprint_source)
    pick_better_op = placement.light(steps.pick_better)
    checkpoint_dirs_op = placement.light(steps.checkpoint_dirs)

    named = functools.partial(placement.named, opts=opts)
    on_cpu = functools.partial(placement.on_cpu, opts=opts)

    scratch_branch = branches.scratch_branch(opts)
    transfer_branch = branches.transfer_branch(opts)
    finish = branches.finish(opts)

    def catsdogs(*values: Any) -> None:
        v = types.SimpleNamespace(**dict(zip(parameters.NAMES, values, strict=True)))
        with contextlib.ExitStack() as stack:
            if opts.retry_note and not opts.local:
                from catsdogs.pipelines.retry_note import retry_note

                note = named(
                    placement.light(retry_note)(run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER),
                    "retry note",
                ).set_caching_options(enable_caching=False)  # takes the run id
                note.set_cpu_request("100m").set_memory_request("256M")
                stack.enter_context(dsl.ExitHandler(note, name="retraining"))
            fingerprint = named(
                fingerprint_op(source=v.source, trainers=v.trainers), "fingerprint source"
            ).set_caching_options(enable_caching=False)
            prepared = on_cpu(
                prepare_dataset(
                    source=v.source,
                    train_per_class=v.train_per_class,
                    val_per_class=v.val_per_class,
                    test_per_class=v.test_per_class,
                    seed=v.seed,
                    source_fingerprint=fingerprint.output,
                ),
                "prepare dataset",
            )
            data = prepared.outputs["dataset"]
            checkpoints = named(
                checkpoint_dirs_op(
                    checkpoint_root=v.checkpoint_root,
                    image=config.image(),
                    source=v.source,
                    source_fingerprint=fingerprint.output,
                    train_per_class=v.train_per_class,
                    val_per_class=v.val_per_class,
                    test_per_class=v.test_per_class,
                    seed=v.seed,
                    batch_size=v.batch_size,
                    scratch_epochs=v.scratch_epochs,
                    scratch_learning_rate=v.scratch_learning_rate,
                    scratch_architecture=v.scratch_architecture,
                    scratch_augmentation=v.scratch_augmentation,
                    scratch_steps_per_epoch=v.scratch_steps_per_epoch,
                    transfer_backbone=v.transfer_backbone,
                    transfer_weights=v.transfer_weights,
                    transfer_mode=v.transfer_mode,
                    transfer_epochs=v.transfer_epochs,
                ),
                "name checkpoint folders",
            )

            def scratch() -> Any:
                return scratch_branch(
                    data=data,
                    epochs=v.scratch_epochs,
                    batch_size=v.batch_size,
                    learning_rate=v.scratch_learning_rate,
                    seed=v.seed,
                    checkpoint_dir=checkpoints.outputs["scratch"],
                    architecture=v.scratch_architecture,
                    augmentation=v.scratch_augmentation,
                    steps_per_epoch=v.scratch_steps_per_epoch,
                )

            def transfer() -> Any:
                return transfer_branch(
                    data=data,
                    backbone=v.transfer_backbone,
                    weights=v.transfer_weights,
                    mode=v.transfer_mode,
                    epochs=v.transfer_epochs,
                    batch_size=v.batch_size,
                    seed=v.seed,
                    checkpoint_dir=checkpoints.outputs["transfer"],
                )

            def finish_with(branch: Any) -> None:
                finish(
                    model=branch.outputs["model"],
                    evaluation=branch.outputs["evaluation"],
                    data=data,
                    champion_uri=v.champion_uri,
                    margin=v.margin,
                    serving_uri=v.serving_uri,
                    service_name=v.service_name,
                )

            with dsl.If(v.trainers == "both", name="both-trainers"):
                scratch_run, transfer_run = scratch(), transfer()
                better = named(
                    pick_better_op(
                        scratch_accuracy=scratch_run.outputs["accuracy"],
                        transfer_accuracy=transfer_run.outputs["accuracy"],
                    ),
                    "pick better model",
                )
                with dsl.If(better.output == "scratch", name="scratch-is-better"):
                    finish_with(scratch_run)
                with dsl.Else(name="transfer-is-better"):
                    finish_with(transfer_run)
            with dsl.Elif(v.trainers == "scratch", name="scratch-only"):
                finish_with(scratch())
            with dsl.Elif(v.trainers == "transfer", name="transfer-only"):
                finish_with(transfer())

    # One definition of the parameters (pipelines/parameters.py): KFP reads this signature and
    # docstring for the spec's inputs, defaults and descriptions.
    catsdogs.__signature__ = parameters.pipeline_signature()  # type: ignore[attr-defined]
    catsdogs.__doc__ = parameters.pipeline_docstring(DESCRIPTION)
    catsdogs.__annotations__ = {p.name: p.type for p in parameters.fields()}
    return dsl.pipeline(
        name=PIPELINE_NAME,
        description=DESCRIPTION,
        pipeline_config=None if opts.local else placement.run_guards(opts),
    )(catsdogs)
