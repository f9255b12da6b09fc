"""Turn a folder, archive, gs:// prefix or URL of cat and dog photos into a prepared dataset.

The steps of ``prepare``, each in its own module:

1. ``sources``: fingerprint the source, bring it to a local folder (``archives`` extracts archives
   safely) and find the labelled images.
2. ``validation``: validate and re-encode every image in worker processes; failures are quarantined.
3. ``split``: split deterministically and stratified into train, val and test.
4. ``output``: write a few TFRecord shards per split, then ``report``'s ``quality_report.md`` and,
   last, ``manifest.json`` (``records.Manifest``).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

from catsdogs.components.common import records, storage, tempdirs
from catsdogs.components.common.errors import SourceError
from catsdogs.components.prepare_dataset import sources, validation
from catsdogs.components.prepare_dataset.output import (
    check_output,
    clear_leftovers,
    existing_dataset,
    is_complete,
    output_folder,
    write_shards,
)
from catsdogs.components.prepare_dataset.report import REPORT, quality_report
from catsdogs.components.prepare_dataset.settings import PrepareSettings
from catsdogs.components.prepare_dataset.sources import source_fingerprint
from catsdogs.components.prepare_dataset.split import assign_splits, per_class, split_sizes


@dataclasses.dataclass(frozen=True)
class PrepareResult:
    """What ``prepare`` wrote (or found already prepared)."""

    output: str
    manifest_uri: str
    source_fingerprint: str
    counts: dict[str, int]  # split -> images
    quarantined: int
    report: str  # the Markdown quality report
    already_prepared: bool = False


def prepare(
    source: str,
    output: str,
    cfg: PrepareSettings | None = None,
    *,
    report_path: str | None = None,
    progress: bool = True,
) -> PrepareResult:
    """Validate, split and write the dataset of ``source`` to ``output`` (local, gs:// or s3://).

    A run that was killed or failed leaves no manifest, so ``output`` is no dataset yet; the next
    run with the same inputs removes what it left (shards, temporary files, its TMPDIR folders).

    Args:
        source: Folder, .zip/.tar(.gz) archive, gs:// prefix or archive object, or http(s) URL.
        output: Folder or gs:// prefix for the shards, ``quality_report.md`` and ``manifest.json``.
        cfg: Split and encoding settings (defaults: 1000/500/500 per class, seed 1337).
        report_path: Also write the Markdown quality report here (e.g. a KFP Markdown artifact).
        progress: Show progress bars on stderr.

    Raises:
        SourceError: The source is empty, missing, unreadable, unsafe or has too few usable images.
        OutputConflictError: ``output`` is a file, or holds a different dataset or foreign files.
        StorageError: A disk filled up (the message names the folder and the space needed).
    """
    cfg = cfg or PrepareSettings()
    check_output(output)
    settings = cfg.settings()
    fingerprint = source_fingerprint(source)  # refuses an empty source too
    shown = sources.redact(source)
    existing = existing_dataset(output, fingerprint, settings)
    if existing is not None and is_complete(output, existing):
        report = storage.read_text(storage.join(output, REPORT))
        _copy_report(report, report_path)
        return _result(output, existing, report, already_prepared=True)
    temp = tempfile.gettempdir()
    with (
        storage.disk_full(temp, "the source and its validated images", None, storage.TMPDIR_FIX),
        sources.materialize(source, fingerprint, cfg.sha256) as local,
        tempdirs.temporary("spool") as spool,
    ):
        candidates, ignored, links = sources.scan(local.root)
        found = per_class([(c.name, c.label) for c in candidates])
        if min(found.values()) == 0:
            counts = " and ".join(f"{n} {cls}" for cls, n in found.items())
            raise SourceError(
                f"Expected a folder of <class>.<id>.jpg files or <class>/ subfolders "
                f"({', '.join(records.CLASSES)}) under {shown}, found {counts} images (first "
                f"entries: {sources.first_entries(local.root)})."
                + sources.links_not_followed(local.root, links)
            )
        split_sizes(cfg, found, shown)  # fail fast, before decoding anything
        started = time.perf_counter()
        results = validation.validate_all(
            [c.path for c in candidates],
            spool,
            cfg.max_side,
            cfg.jpeg_quality,
            cfg.workers,
            progress,
        )
        seconds = time.perf_counter() - started
        outcomes = {c.name: o for c, o in zip(candidates, results, strict=True)}
        valid = [(c.name, c.label) for c, o in zip(candidates, results, strict=True) if o.ok]
        quarantined = sorted(
            [
                *local.rejected,
                *links,
                *(records.Quarantined(n, o.reason) for n, o in outcomes.items() if not o.ok),
            ],
            key=lambda q: q.file,
        )
        valid_found = per_class(valid)
        if min(valid_found.values()) == 0:
            counts = " and ".join(f"{n} valid {cls}" for cls, n in valid_found.items())
            raise SourceError(
                f"Expected valid images of both classes under {shown}, found {counts} images "
                f"({len(quarantined)} quarantined, e.g. {quarantined[0].file}: "
                f"{quarantined[0].reason}). Fix or replace the files."
            )
        assigned = assign_splits(valid, cfg, shown)
        clear_leftovers(output)
        needed = sum(outcomes[name].nbytes for items in assigned.values() for name, _ in items)
        with (
            output_folder(output) as folder,
            storage.disk_full(folder, "the shards", needed, _OUT_FIX),
        ):
            splits = {
                name: records.Split(
                    len(items), per_class(items), write_shards(folder, name, items, outcomes)
                )
                for name, items in assigned.items()
            }
            manifest = records.Manifest(
                classes=records.CLASSES,
                splits=splits,
                quarantined=tuple(quarantined),
                seed=cfg.seed,
                source_fingerprint=fingerprint,
                source=shown,
                settings=settings,
                found=records.Found(found, len(ignored)),
                format={"records": "tfrecord", "image": "jpeg", "features": list(records.FEATURES)},
            )
            report = quality_report(manifest, found, ignored, outcomes, seconds)
            (folder / REPORT).write_text(report)
    with storage.disk_full(output, "manifest.json", len(manifest.to_json()), _OUT_FIX):
        records.write_manifest(output, manifest)  # last: only now is the folder a dataset
    _copy_report(report, report_path)
    return _result(output, manifest, report, already_prepared=False)


_OUT_FIX = "Free some space there, or choose an --output on a larger disk."


def _copy_report(report: str, report_path: str | None) -> None:
    if report_path:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(report_path).write_text(report)


def _result(
    output: str, manifest: records.Manifest, report: str, *, already_prepared: bool
) -> PrepareResult:
    return PrepareResult(
        output=output,
        manifest_uri=storage.join(output, records.MANIFEST),
        source_fingerprint=manifest.source_fingerprint,
        counts={name: manifest.splits[name].count for name in records.SPLITS},
        quarantined=len(manifest.quarantined),
        report=report,
        already_prepared=already_prepared,
    )
