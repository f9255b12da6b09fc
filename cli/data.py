"""``catsdogs prepare``: validate, split and shard the photos into a prepared dataset."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from catsdogs.components.common import storage
from catsdogs.components.common.errors import SettingsError
from catsdogs.components.prepare_dataset.settings import PrepareSettings
from catsdogs.components.prepare_dataset.sources import DEFAULT_SOURCE

app = typer.Typer()
_DEFAULTS = PrepareSettings()


@app.command()
def prepare(
    output: Annotated[
        str,
        typer.Option(help="Folder or gs:// / s3:// prefix for the shards, report and manifest."),
    ],
    source: Annotated[
        str,
        typer.Option(
            help="Folder (cat.<id>.jpg files or Cat/ Dog/ subfolders), .zip/.tar(.gz), gs:// or s3:// "
            "prefix or archive object, or https:// URL. Default: Microsoft's PetImages archive."
        ),
    ] = DEFAULT_SOURCE,
    train_per_class: Annotated[
        int | None,
        typer.Option(help=f"Training images per class (default {_DEFAULTS.train_per_class})."),
    ] = None,
    val_per_class: Annotated[
        int | None,
        typer.Option(help=f"Validation images per class (default {_DEFAULTS.val_per_class})."),
    ] = None,
    test_per_class: Annotated[
        int | None,
        typer.Option(help=f"Test images per class (default {_DEFAULTS.test_per_class})."),
    ] = None,
    val_fraction: Annotated[
        float | None,
        typer.Option(help="Split by fractions instead: share of each class for validation."),
    ] = None,
    test_fraction: Annotated[
        float | None,
        typer.Option(help="Split by fractions instead: share of each class for test."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the deterministic split.")] = _DEFAULTS.seed,
    max_side: Annotated[
        int, typer.Option(help="Downscale so the longer side is at most this many pixels.")
    ] = _DEFAULTS.max_side,
    workers: Annotated[
        int, typer.Option(help="Decoding processes (0: all cores).")
    ] = _DEFAULTS.workers,
    sha256: Annotated[
        str, typer.Option(help="Expected sha256 of a downloaded (https://) source.")
    ] = _DEFAULTS.sha256,
) -> None:
    """Validate, split and shard the photos of SOURCE into a prepared dataset at OUTPUT."""
    from catsdogs.components.prepare_dataset import core

    counts = {
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
        "test_per_class": test_per_class,
    }
    fractions = {"val_fraction": val_fraction, "test_fraction": test_fraction}
    given_counts = [k for k, v in counts.items() if v is not None]
    given_fractions = [k for k, v in fractions.items() if v is not None]
    if given_counts and given_fractions:
        raise SettingsError(
            f"--{given_counts[0].replace('_', '-')} and --{given_fractions[0].replace('_', '-')} "
            "cannot be combined: split either by per-class counts or by fractions, not both."
        )
    chosen: dict[str, Any] = {k: v for k, v in {**counts, **fractions}.items() if v is not None}
    cfg = PrepareSettings(**chosen, seed=seed, max_side=max_side, workers=workers, sha256=sha256)
    storage.check_output(output, "--output")
    result = core.prepare(source, output, cfg)
    summary = ", ".join(f"{split} {n}" for split, n in result.counts.items())
    state = "already prepared" if result.already_prepared else "prepared"
    typer.echo(
        f"{result.output} {state}: {summary}; {result.quarantined} quarantined. "
        f"Manifest: {result.manifest_uri}"
    )
