"""The pipeline's run parameters, defined once: name, type, default, choices and help.

Each parameter is one field of :class:`RunParameters` (its default read from the component's
settings, its help and choices in the field's metadata). Everything else derives from it:

- the ``@dsl.pipeline`` signature and the descriptions in the compiled spec
  (:func:`pipeline_signature`, :func:`pipeline_docstring`, used by ``pipelines/pipeline.py``);
- the options of ``catsdogs run``, ``submit`` and ``schedule create``
  (``with_run_parameters`` in ``cli/pipeline.py``): one ``--name`` per parameter, a choice list
  where the parameter has choices;
- the check of every value (:meth:`RunParameters.__post_init__`: choices here, ranges by the
  components' own settings).

Adding a parameter is adding a field here and the code that uses it. Names say whose they are:
``scratch_*`` for the CNN trained from scratch, ``transfer_*`` for the transfer model; ``seed``
and ``batch_size`` serve both trainers (and ``seed`` the split).

No ``from __future__ import annotations``: the field types are read as objects.
"""

import dataclasses
import inspect
import typing
from typing import Any

from catsdogs.components.common.errors import SettingsError
from catsdogs.components.common.training.augmentation import AUGMENTATIONS
from catsdogs.components.prepare_dataset.settings import PrepareSettings
from catsdogs.components.promote.core import PromoteSettings
from catsdogs.components.train_scratch.core import ARCHITECTURES, ScratchSettings
from catsdogs.components.train_transfer.settings import MODES, TransferSettings

TRAINERS = ("both", "scratch", "transfer")

_PREPARE = PrepareSettings()
_SCRATCH = ScratchSettings()
_TRANSFER = TransferSettings()
_PROMOTE = PromoteSettings()


def _parameter(default: Any, help: str, choices: tuple[str, ...] = ()) -> Any:  # noqa: A002
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


@dataclasses.dataclass(frozen=True)
class RunParameters:
    """The pipeline's run parameters (one field each; see the module docstring).

    Raises:
        SettingsError: A value is not one of its choices or out of range (the components'
            settings check the ranges, with the rules they apply when they run).
    """

    source: str = dataclasses.field(
        metadata={
            "help": "The photos: a folder, .zip/.tar, gs:// or s3:// prefix or https:// URL "
            "(cats and dogs as <class>.<id>.jpg files or <class>/ subfolders).",
            "choices": (),
        }
    )
    train_per_class: int = _parameter(_PREPARE.train_per_class, "Training images per class.")
    val_per_class: int = _parameter(_PREPARE.val_per_class, "Validation images per class.")
    test_per_class: int = _parameter(
        _PREPARE.test_per_class, "Test images per class (the evaluation's held-out split)."
    )
    seed: int = _parameter(_PREPARE.seed, "Seed of the split and of both trainers.")
    trainers: str = _parameter(
        TRAINERS[0],
        "Which trainers run (both: the better model is rendered and promoted).",
        TRAINERS,
    )
    batch_size: int = _parameter(_SCRATCH.batch_size, "Batch size of both trainers.")
    scratch_epochs: int = _parameter(_SCRATCH.epochs, "Epochs of the CNN trained from scratch.")
    scratch_architecture: str = _parameter(
        _SCRATCH.architecture,
        "The CNN trained from scratch: seed (the book's convnet) or xception-mini.",
        ARCHITECTURES,
    )
    scratch_augmentation: str = _parameter(
        _SCRATCH.augmentation,
        "The scratch CNN's augmentation: seed (the book's ImageDataGenerator) or strong.",
        AUGMENTATIONS,
    )
    scratch_steps_per_epoch: int = _parameter(
        _SCRATCH.steps_per_epoch,
        "Batches per scratch epoch (the book: 100); 0 means one pass over the training split.",
    )
    scratch_learning_rate: float = _parameter(
        _SCRATCH.learning_rate, "RMSprop learning rate of the CNN trained from scratch."
    )
    transfer_epochs: int = _parameter(_TRANSFER.epochs, "Epochs of the transfer model's head.")
    transfer_backbone: str = _parameter(
        _TRANSFER.backbone,
        "keras.applications backbone of the transfer model (vgg16, mobilenet_v2, ...).",
    )
    transfer_weights: str = _parameter(
        _TRANSFER.weights,
        "Backbone weights: imagenet (baked into the image), none, or a .h5 file (gs:// or "
        "s3:// on a cluster).",
    )
    transfer_mode: str = _parameter(
        _TRANSFER.mode,
        "features (backbone run once, head trained on cached features), frozen or fine-tune.",
        MODES,
    )
    champion_uri: str = _parameter(
        "", "Folder of the champion model (gs://, s3://); empty skips the champion gate."
    )
    margin: float = _parameter(
        _PROMOTE.margin, "Test accuracy a challenger must beat the champion by to be promoted."
    )
    checkpoint_root: str = _parameter(
        "",
        "Prefix for per-epoch checkpoints (gs://, s3://), so a retried (pre-empted) trainer "
        "resumes; empty: no checkpoints.",
    )
    serving_uri: str = _parameter(
        "",
        "Prefix for the champion's SavedModel versions (gs://, s3://); when set, a promotion "
        "exports the new champion there and deploys it (KServe); empty: no export, no deployment.",
    )
    service_name: str = _parameter(
        "catsdogs", "Name of the KServe InferenceService the champion is deployed as."
    )

    def __post_init__(self) -> None:
        if not self.source:
            raise SettingsError(
                "source must name a folder, archive, gs:// or s3:// prefix or URL, got ''."
            )
        for item in fields():
            value = getattr(self, item.name)
            if item.choices and value not in item.choices:
                raise SettingsError(
                    f"{item.name} must be one of {', '.join(item.choices)}, got {value!r}."
                )
        for name in ("train_per_class", "val_per_class", "test_per_class", "scratch_epochs"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("transfer_epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}.")
        # The components check the rest, with the same rules as when they run.
        PrepareSettings(
            train_per_class=self.train_per_class,
            val_per_class=self.val_per_class,
            test_per_class=self.test_per_class,
            seed=self.seed,
        )
        common = {"batch_size": self.batch_size, "seed": self.seed}
        ScratchSettings(
            epochs=self.scratch_epochs,
            learning_rate=self.scratch_learning_rate,
            architecture=self.scratch_architecture,
            augmentation=self.scratch_augmentation,
            steps_per_epoch=self.scratch_steps_per_epoch,
            **common,
        )
        TransferSettings(
            backbone=self.transfer_backbone,
            weights=self.transfer_weights,
            mode=self.transfer_mode,
            epochs=self.transfer_epochs,
            **common,
        )
        PromoteSettings(margin=self.margin)

    def arguments(self) -> dict[str, Any]:
        """The pipeline arguments, by parameter name."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One run parameter as the pipeline and the CLI see it."""

    name: str
    type: type
    default: Any  # inspect.Parameter.empty: required
    help: str
    choices: tuple[str, ...]


def fields() -> tuple[Parameter, ...]:
    """Every run parameter, in order (``source`` first, the only required one)."""
    types = typing.get_type_hints(RunParameters)
    return tuple(
        Parameter(
            name=item.name,
            type=types[item.name],
            default=inspect.Parameter.empty
            if item.default is dataclasses.MISSING
            else item.default,
            help=item.metadata["help"],
            choices=item.metadata["choices"],
        )
        for item in dataclasses.fields(RunParameters)
    )


NAMES = tuple(item.name for item in dataclasses.fields(RunParameters))


def description(item: Parameter) -> str:
    """The help text, with the choices when the help does not already name them all."""
    if item.choices and not all(choice in item.help for choice in item.choices):
        return f"{item.help} One of: {', '.join(item.choices)}."
    return item.help


def pipeline_signature() -> inspect.Signature:
    """The ``@dsl.pipeline`` function's signature: one typed parameter per field, with defaults."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature(
        [inspect.Parameter(p.name, kind, default=p.default, annotation=p.type) for p in fields()],
        return_annotation=None,
    )


def pipeline_docstring(summary: str) -> str:
    """A Google-style docstring whose ``Args`` KFP turns into the spec's descriptions."""
    lines = [summary, "", "Args:"]
    lines += [f"    {item.name}: {description(item)}" for item in fields()]
    return "\n".join(lines) + "\n"
