"""A one-task pipeline for local-run tests (no ``from __future__ import annotations``: KFP reads
the real annotation objects).

Its task writes a newer run folder beside its own, as a second ``catsdogs run`` started later
into the same output does, and prints the source it was given.
"""

from kfp import dsl

LATER_RUN = "catsdogs-9999-12-31-23-59-59-999999"


@dsl.component(base_image="python:3.11")
def fingerprint_source(source: str, marker: dsl.Output[dsl.Artifact]) -> str:
    """Write the marker, make a later run's folder, print the source."""
    import os

    run_dir = os.path.dirname(os.path.dirname(marker.path))
    later = os.path.join(os.path.dirname(run_dir), "catsdogs-9999-12-31-23-59-59-999999")
    os.makedirs(os.path.join(later, "fingerprint-source"), exist_ok=True)
    with open(marker.path, "w") as handle:
        handle.write("mine")
    print(f"source is {source}")
    return "fingerprint"


@dsl.pipeline(name="catsdogs")
def tiny(source: str) -> None:
    """One task."""
    fingerprint_source(source=source)
