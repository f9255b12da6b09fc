"""The settings every trainer has, their checks, and the identity of a run.

``TrainingSettings`` is the one source of the shared defaults (the seed's); a trainer subclasses
it to add fields or change defaults and calls ``super().__post_init__()``. ``run_identity`` says
what makes two runs the same run, so a rerun resumes it and another run is refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from catsdogs.components.common.errors import SettingsError
from catsdogs.components.common.records import Manifest
from catsdogs.components.common.training.augmentation import check_augmentation

MIXED_PRECISION_CHOICES = ("auto", "on", "off", "bf16")
MAX_EPOCHS = 100_000
MAX_BATCH_SIZE = 65_536
MAX_LEARNING_RATE = 10.0
MAX_STEPS_PER_EPOCH = 1_000_000
# Settings that do not change what a run computes: a rerun may change them freely.
NON_IDENTITY_FIELDS = frozenset({"checkpoint_dir", "require_gpu"})


def check_learning_rate(name: str, value: float) -> None:
    """Raise SettingsError unless ``value`` is a learning rate in (0, MAX_LEARNING_RATE].

    Every learning-rate setting (``learning_rate``, ``fine_tune_learning_rate``...) is checked
    here, so they all accept the same range.
    """
    if not 0.0 < value <= MAX_LEARNING_RATE:
        raise SettingsError(f"{name} must be in (0, {MAX_LEARNING_RATE:g}], got {value}.")


def check_epochs(name: str, value: int, minimum: int = 1) -> None:
    """Raise SettingsError unless ``minimum <= value <= MAX_EPOCHS``."""
    if not minimum <= value <= MAX_EPOCHS:
        raise SettingsError(f"{name} must be between {minimum} and {MAX_EPOCHS}, got {value}.")


def check_dropout(value: float) -> None:
    """Raise SettingsError unless ``value`` is a dropout rate in [0, 1)."""
    if not 0.0 <= value < 1.0:
        raise SettingsError(f"dropout must be in [0, 1), got {value}.")


@dataclass(frozen=True)
class TrainingSettings:
    """Settings every trainer has. Subclasses add fields and may override defaults.

    Attributes:
        epochs: Number of passes over the training split (the seed's figure: 100).
        batch_size: Images per step.
        learning_rate: Optimizer learning rate.
        seed: Seed for weights, shuffling and augmentation (keras.utils.set_random_seed).
        image_size: ``(height, width)`` the images are decoded/resized to and the model takes.
        early_stopping_patience: Stop after this many epochs without a lower val_loss (0 = off).
        augmentation: ``seed`` (exactly the seed's ImageDataGenerator: shear 0.2 degrees) or
            ``strong`` (the same with shear up to 11.5 degrees); see ``training.augmentation``.
        steps_per_epoch: Training batches per epoch, cycling through the shuffled split (the
            book: 100 steps of 32, 1.6 passes over 2,000 images); 0: one pass over the split.
        mixed_precision: ``"auto"`` (mixed_float16 only when a GPU is present), ``"on"``
            (mixed_float16), ``"off"`` or ``"bf16"`` (mixed_bfloat16, for CPUs with bf16 units).
        xla: Compile the training step with XLA (``jit_compile``).
        checkpoint_dir: Where per-epoch checkpoints go (local, gs:// or s3://); ``""`` means
            ``<output>/.checkpoint``. Use a stable location on preemptible nodes.
        require_gpu: Fail at once when TensorFlow sees no GPU.
    """

    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-4
    seed: int = 1337
    image_size: tuple[int, int] = (150, 150)
    early_stopping_patience: int = 0
    augmentation: str = "seed"
    steps_per_epoch: int = 0
    mixed_precision: str = "auto"
    xla: bool = False
    checkpoint_dir: str = ""
    require_gpu: bool = False

    def __post_init__(self) -> None:
        check_epochs("epochs", self.epochs)
        if not 1 <= self.batch_size <= MAX_BATCH_SIZE:
            raise SettingsError(
                f"batch_size must be between 1 and {MAX_BATCH_SIZE}, got {self.batch_size}."
            )
        check_learning_rate("learning_rate", self.learning_rate)
        if not 0 <= self.seed < 2**31:
            raise SettingsError(f"seed must be between 0 and 2**31-1, got {self.seed}.")
        size = tuple(self.image_size)
        if len(size) != 2 or not all(isinstance(v, int) and 16 <= v <= 4096 for v in size):
            raise SettingsError(
                f"image_size must be (height, width) with each between 16 and 4096, "
                f"got {self.image_size!r}."
            )
        object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))
        if not 0 <= self.early_stopping_patience <= MAX_EPOCHS:
            raise SettingsError(
                "early_stopping_patience must be 0 (off) or a positive number of epochs, "
                f"got {self.early_stopping_patience}."
            )
        check_augmentation(self.augmentation)
        if not 0 <= self.steps_per_epoch <= MAX_STEPS_PER_EPOCH:
            raise SettingsError(
                f"steps_per_epoch must be 0 (one pass over the training split) or up to "
                f"{MAX_STEPS_PER_EPOCH}, got {self.steps_per_epoch}."
            )
        if self.mixed_precision not in MIXED_PRECISION_CHOICES:
            raise SettingsError(
                f"mixed_precision must be one of {', '.join(MIXED_PRECISION_CHOICES)}, "
                f"got {self.mixed_precision!r}."
            )

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-ready values (tuples become lists)."""
        out = dataclasses.asdict(self)
        out["image_size"] = list(self.image_size)
        return out


def run_identity(kind: str, settings: TrainingSettings, manifest: Manifest) -> dict[str, Any]:
    """What makes two runs the same run: trainer kind, settings that change results, data content.

    ``checkpoint_dir`` and ``require_gpu`` are left out (they do not change what is computed); the
    data is identified by a hash of its manifest (which holds every shard's sha256), not its path.
    """
    values = {k: v for k, v in settings.to_dict().items() if k not in NON_IDENTITY_FIELDS}
    content = json.dumps(manifest.to_dict(), sort_keys=True)
    manifest_hash = hashlib.sha256(content.encode()).hexdigest()
    return {"kind": kind, "settings": values, "data_manifest_sha256": manifest_hash}


def describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """How run identity ``old`` (found) differs from ``new`` (asked), short enough to read.

    Another kind of run is named as such (its settings differ by nature); otherwise the first
    ``SHOWN_DIFFERENCES`` differing settings are listed, then how many more there are.
    """
    if old.get("kind") != new.get("kind"):
        return f"a {old.get('kind')} run there, {new.get('kind')} asked"
    diffs = []
    old_s, new_s = old.get("settings", {}), new.get("settings", {})
    for key in sorted(set(old_s) | set(new_s)):
        if old_s.get(key) != new_s.get(key):
            diffs.append(f"{key}={_short(old_s.get(key))} there, {_short(new_s.get(key))} asked")
    if old.get("data_manifest_sha256") != new.get("data_manifest_sha256"):
        diffs.append("a different dataset")
    if len(diffs) > SHOWN_DIFFERENCES:
        more = len(diffs) - SHOWN_DIFFERENCES
        diffs = [*diffs[:SHOWN_DIFFERENCES], f"{more} more difference{'s' * (more > 1)}"]
    return ", ".join(diffs) or "different content"


SHOWN_DIFFERENCES = 3


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
