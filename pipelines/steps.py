"""The pipeline's two small glue steps, as plain functions that become lightweight components.

No ``from __future__ import annotations`` here: KFP reads the real annotation objects, and ships
each function's source text alone, so the bodies import what they need.
"""

from typing import NamedTuple


def fingerprint_source(source: str, trainers: str) -> str:
    """Check the run's parameters and fingerprint the source (a KFP step that is never cached).

    Args:
        source: The folder, archive, gs:// prefix or https:// URL to prepare.
        trainers: Which trainers run: both, scratch or transfer.

    Returns:
        The source fingerprint; it changes when the source data changes.
    """
    if trainers not in ("both", "scratch", "transfer"):
        raise ValueError(
            f"trainers must be one of both, scratch, transfer; got {trainers!r}. "
            "Set the pipeline parameter trainers to one of them."
        )
    from catsdogs.components.prepare_dataset import sources

    return sources.source_fingerprint(source)


def pick_better(scratch_accuracy: float, transfer_accuracy: float) -> str:
    """Name the model with the higher test accuracy (scratch wins a tie: it is smaller).

    Args:
        scratch_accuracy: Test accuracy of the model trained from scratch.
        transfer_accuracy: Test accuracy of the transfer model.

    Returns:
        "scratch" or "transfer".
    """
    better = "scratch" if scratch_accuracy >= transfer_accuracy else "transfer"
    print(f"scratch={scratch_accuracy:.4f} transfer={transfer_accuracy:.4f} -> {better}")
    return better


def checkpoint_dirs(
    checkpoint_root: str,
    image: str,
    source: str,
    source_fingerprint: str,
    train_per_class: int,
    val_per_class: int,
    test_per_class: int,
    seed: int,
    batch_size: int,
    scratch_epochs: int,
    scratch_learning_rate: float,
    scratch_architecture: str,
    scratch_augmentation: str,
    scratch_steps_per_epoch: int,
    transfer_backbone: str,
    transfer_weights: str,
    transfer_mode: str,
    transfer_epochs: int,
) -> NamedTuple(  # type: ignore[valid-type]
    "CheckpointDirs", [("scratch", str), ("transfer", str)]
):
    """Name each trainer's checkpoint folder from what decides its training, not from the run.

    The same data, trainer parameters and image give the same folder: a retried (pre-empted)
    trainer of the same run resumes there, and an unchanged scheduled run keeps every cache key
    of the run before it (KFP's cache key holds each input value, so a run id here would make
    every run retrain). Changed inputs give a new folder.

    Args:
        checkpoint_root: A gs:// prefix (or local folder) that outlives the pods; "" keeps no
            checkpoints across pods (a retry starts its training over).
        image: The component image (by digest on a cluster): new code, new folders.
        source: The source the dataset is prepared from.
        source_fingerprint: fingerprint_source's output: it changes when the data changes.
        train_per_class: Training images per class.
        val_per_class: Validation images per class.
        test_per_class: Test images per class.
        seed: Seed of the split and of both trainers.
        batch_size: Batch size of both trainers.
        scratch_epochs: Epochs of the CNN trained from scratch.
        scratch_learning_rate: Learning rate of the CNN trained from scratch.
        scratch_architecture: The scratch CNN's architecture.
        scratch_augmentation: The scratch CNN's augmentation.
        scratch_steps_per_epoch: Batches per scratch epoch.
        transfer_backbone: The transfer model's backbone.
        transfer_weights: The backbone's weights.
        transfer_mode: features, frozen or fine-tune.
        transfer_epochs: Epochs of the transfer model.

    Returns:
        ``<root>/scratch-<16 hex>`` and ``<root>/transfer-<16 hex>`` ("" and "" without a root).
    """
    import hashlib
    import json
    from collections import namedtuple

    CheckpointDirs = namedtuple("CheckpointDirs", ["scratch", "transfer"])  # noqa: PYI024
    if not checkpoint_root:
        return CheckpointDirs("", "")
    data = {
        "source": source,
        "source_fingerprint": source_fingerprint,
        "split": [train_per_class, val_per_class, test_per_class, seed],
    }
    trainers = {
        "scratch": {
            "epochs": scratch_epochs,
            "learning_rate": scratch_learning_rate,
            "architecture": scratch_architecture,
            "augmentation": scratch_augmentation,
            "steps_per_epoch": scratch_steps_per_epoch,
        },
        "transfer": {
            "backbone": transfer_backbone,
            "weights": transfer_weights,
            "mode": transfer_mode,
            "epochs": transfer_epochs,
        },
    }
    base = checkpoint_root.rstrip("/")
    folders = []
    for kind, parameters in trainers.items():
        decides = {"image": image, "data": data, "batch_size": batch_size, "seed": seed}
        text = json.dumps(dict(decides, trainer=parameters), sort_keys=True)
        folders.append(f"{base}/{kind}-{hashlib.sha256(text.encode()).hexdigest()[:16]}")
    return CheckpointDirs(*folders)
