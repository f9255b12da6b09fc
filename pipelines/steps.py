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


def checkpoint_dirs(checkpoint_root: str, run_id: str) -> NamedTuple(  # type: ignore[valid-type]
    "CheckpointDirs", [("scratch", str), ("transfer", str)]
):
    """Name this run's checkpoint folders, so a retried (preempted) trainer resumes its epochs.

    Args:
        checkpoint_root: A gs:// prefix (or local folder) that outlives the pods; "" keeps no
            checkpoints across pods (a retry starts its training over).
        run_id: The pipeline run's id: a retry of a task sees the same folders, a new run new ones.

    Returns:
        The scratch and transfer checkpoint folders ("" and "" when checkpoint_root is "").
    """
    from collections import namedtuple

    CheckpointDirs = namedtuple("CheckpointDirs", ["scratch", "transfer"])  # noqa: PYI024
    if not checkpoint_root:
        return CheckpointDirs("", "")
    base = f"{checkpoint_root.rstrip('/')}/{run_id}"
    return CheckpointDirs(f"{base}/scratch", f"{base}/transfer")
