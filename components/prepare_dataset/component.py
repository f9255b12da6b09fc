"""KFP wrapper of ``prepare_dataset.core.prepare`` (thin: the logic lives in core.py)."""

from catsdogs.components.common.config import image
from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

IMAGE = image()


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def prepare_dataset(
    source: str,
    dataset: Output[Dataset],
    report: Output[Markdown],
    train_per_class: int = 1000,
    val_per_class: int = 500,
    test_per_class: int = 500,
    val_fraction: float = 0.0,
    test_fraction: float = 0.0,
    seed: int = 1337,
    source_fingerprint: str = "",
) -> str:
    """Validate, split and shard the cat/dog photos of ``source`` into a prepared dataset.

    Args:
        source: Folder, .zip/.tar(.gz), gs:// prefix or archive object, or http(s) URL.
        dataset: Output folder: TFRecord shards, quality_report.md, manifest.json (last).
        report: The data-quality report, shown by the KFP UI.
        train_per_class: Training images per class (ignored when fractions are set).
        val_per_class: Validation images per class (ignored when fractions are set).
        test_per_class: Test images per class (ignored when fractions are set).
        val_fraction: Fraction of each class for validation (0: use the per-class counts).
        test_fraction: Fraction of each class for test (0: use the per-class counts).
        seed: Seed of the deterministic split.
        source_fingerprint: Only a cache-key input (see sources.source_fingerprint); not used.

    Returns:
        The source fingerprint the dataset was prepared from.
    """
    from catsdogs.components.common import quiet
    from catsdogs.components.prepare_dataset import core

    quiet.install()
    cfg = core.PrepareSettings(
        train_per_class=train_per_class,
        val_per_class=val_per_class,
        test_per_class=test_per_class,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        seed=seed,
    )
    result = core.prepare(source, dataset.path, cfg, report_path=report.path)
    dataset.metadata.update({f"{split}_count": n for split, n in result.counts.items()})
    dataset.metadata["quarantined"] = result.quarantined
    return result.source_fingerprint
