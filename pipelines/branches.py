"""The pipeline's sub-pipelines, each a module-level factory that can be compiled and read alone.

``scratch_branch`` and ``transfer_branch`` train one model and evaluate it (outputs: the model,
its evaluation and its test accuracy); ``finish`` renders the activations of the chosen model and,
when a champion is set, runs the champion gate and, after a promotion with ``serving_uri`` set,
exports and deploys it. Each takes the compile-time options (where tasks run, what they request);
``pipelines/pipeline.py`` wires them into the ``@dsl.pipeline``.

No ``from __future__ import annotations``: KFP reads the sub-pipelines' annotations as objects.
kfp and the components are imported inside the factories (importing this module stays cheap).
"""

import functools
from typing import TYPE_CHECKING, Any

from catsdogs.pipelines import placement
from catsdogs.pipelines.options import PipelineOptions

if TYPE_CHECKING:
    from kfp.dsl.graph_component import GraphComponent


@functools.cache
def trained_type() -> Any:
    """The outputs of a training branch: the model, its evaluation and its test accuracy."""
    from typing import NamedTuple

    from kfp.dsl import Artifact, Model

    class Trained(NamedTuple):
        model: Model
        evaluation: Artifact
        accuracy: float

    return Trained


def _evaluated(trained: Any, data: Any, display_name: str, opts: PipelineOptions) -> Any:
    """Evaluate a training task's model on the test split; the branch's outputs."""
    from catsdogs.components.evaluate.component import evaluate

    scored = placement.on_gpu(
        evaluate(model=trained.outputs["model"], data=data), display_name, opts
    )
    return trained_type()(
        model=trained.outputs["model"],
        evaluation=scored.outputs["evaluation"],
        accuracy=scored.outputs["Output"],
    )


def scratch_branch(opts: PipelineOptions) -> "GraphComponent":
    """Train the CNN from scratch and evaluate it."""
    from catsdogs.components.train_scratch.component import train_scratch
    from kfp import dsl
    from kfp.dsl import Dataset, Input

    Trained = trained_type()

    @dsl.pipeline(name="scratch-branch", description="Train the CNN from scratch and evaluate it.")
    def scratch_branch(
        data: Input[Dataset],
        epochs: int,
        batch_size: int,
        learning_rate: float,
        seed: int,
        checkpoint_dir: str,
        architecture: str,
        augmentation: str,
        steps_per_epoch: int,
    ) -> Trained:  # type: ignore[valid-type]
        trained = placement.on_gpu(
            train_scratch(
                data=data,
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                seed=seed,
                architecture=architecture,
                augmentation=augmentation,
                steps_per_epoch=steps_per_epoch,
                checkpoint_dir=checkpoint_dir,
                require_gpu=not opts.local,
            ),
            "train from scratch",
            opts,
        )
        return _evaluated(trained, data, "evaluate scratch model", opts)  # type: ignore[no-any-return]

    return scratch_branch


def transfer_branch(opts: PipelineOptions) -> "GraphComponent":
    """Train the transfer model and evaluate it."""
    from catsdogs.components.train_transfer.component import train_transfer
    from kfp import dsl
    from kfp.dsl import Dataset, Input

    Trained = trained_type()

    @dsl.pipeline(name="transfer-branch", description="Train the transfer model and evaluate it.")
    def transfer_branch(
        data: Input[Dataset],
        backbone: str,
        weights: str,
        mode: str,
        epochs: int,
        batch_size: int,
        seed: int,
        checkpoint_dir: str,
    ) -> Trained:  # type: ignore[valid-type]
        trained = placement.on_gpu(
            train_transfer(
                data=data,
                backbone=backbone,
                weights=weights,
                mode=mode,
                epochs=epochs,
                batch_size=batch_size,
                seed=seed,
                checkpoint_dir=checkpoint_dir,
                require_gpu=not opts.local,
            ),
            "train transfer model",
            opts,
        )
        return _evaluated(trained, data, "evaluate transfer model", opts)  # type: ignore[no-any-return]

    return transfer_branch


def finish(opts: PipelineOptions) -> "GraphComponent":
    """Render activations; promote if a champion is set; export and deploy after a promotion."""
    from catsdogs.components.common import config
    from catsdogs.components.promote.component import promote as promote_component
    from catsdogs.components.render_activations.component import render_activations
    from catsdogs.components.serve.component import export_and_deploy
    from kfp import dsl
    from kfp.dsl import Artifact, Dataset, Input, Model

    @dsl.pipeline(name="finish", description="Render activations; promote if a champion is set.")
    def finish(
        model: Input[Model],
        evaluation: Input[Artifact],
        data: Input[Dataset],
        champion_uri: str,
        margin: float,
        serving_uri: str,
        service_name: str,
    ) -> None:
        placement.on_gpu(render_activations(model=model, data=data), "render activations", opts)
        with dsl.If(champion_uri != "", name="champion-set"):
            gate = placement.on_cpu(
                promote_component(
                    model=model,
                    evaluation=evaluation,
                    data=data,
                    champion_uri=champion_uri,
                    margin=margin,
                ),
                "champion gate",
                opts,
            ).set_caching_options(enable_caching=False)  # reads the champion pointer
            with dsl.If(serving_uri != "", name="serving-set"):
                with dsl.If(gate.output == True, name="promoted"):  # noqa: E712
                    placement.on_cpu(
                        export_and_deploy(
                            champion_uri=champion_uri,
                            serving_uri=serving_uri,
                            name=service_name,
                            predictor=opts.serving_predictor,
                            image=config.image(),
                            namespace=opts.serving_namespace,
                            service_account=opts.serving_service_account,
                            canary_traffic_percent=opts.serving_canary_percent,
                            gpus=opts.serving_gpus,
                            cpu=opts.serving_cpu,
                            memory=opts.serving_memory,
                            runtime_version=opts.serving_runtime_version,
                            dry_run=opts.local,
                        ),
                        "export and deploy",
                        opts,
                    ).set_caching_options(enable_caching=False)  # changes the cluster

    return finish
