"""``quality_report.md``: what was found, kept, quarantined and ignored, and the image sizes."""

from __future__ import annotations

import json
import statistics

from catsdogs.components.common.records import SPLITS, Manifest
from catsdogs.components.prepare_dataset.validation import Outcome

REPORT = "quality_report.md"
_QUARANTINE_ROWS = 500  # the manifest lists them all
_IGNORED_ROWS = 10


def quality_report(
    manifest: Manifest,
    found: dict[str, int],
    ignored: list[str],
    outcomes: dict[str, Outcome],
    seconds: float,
) -> str:
    """The Markdown data-quality report of a preparation.

    Args:
        manifest: The dataset's manifest (source, settings, splits, quarantined files).
        found: Labelled images found per class.
        ignored: Files that are not images or have no class.
        outcomes: Validation outcome per image name.
        seconds: How long validation took.
    """
    valid = [o for o in outcomes.values() if o.ok]
    quarantined = manifest.quarantined
    classes = manifest.classes
    lines = [
        "# Data quality report",
        "",
        f"- Source: `{manifest.source}`",
        f"- Source fingerprint: `{manifest.source_fingerprint}`",
        f"- Labelled images found: {sum(found.values())} "
        f"({', '.join(f'{c}: {n}' for c, n in found.items())})",
        f"- Valid: {len(valid)}; quarantined: {len(quarantined)}; other files "
        f"ignored (no image suffix or no class): {len(ignored)}",
        f"- Settings: {json.dumps(manifest.settings, sort_keys=True)}",
        f"- Validation time: {seconds:.1f} s ({len(outcomes) / max(seconds, 1e-9):.0f} images/s)",
        "",
        "## Splits",
        "",
        "| split | images | " + " | ".join(classes) + " | shards | MB |",
        "|---|---|" + "---|" * len(classes) + "---|---|",
    ]
    for name in SPLITS:
        split = manifest.splits[name]
        size = sum(s.size for s in split.shards) / 1e6
        per_class = " | ".join(str(split.per_class[c]) for c in classes)
        lines.append(f"| {name} | {split.count} | {per_class} | {len(split.shards)} | {size:.1f} |")
    if valid:
        sides = [max(o.original) for o in valid]
        out_sides = [max(o.encoded) for o in valid]
        lines += [
            "",
            "## Image sizes (longer side, pixels)",
            "",
            "| | min | median | max |",
            "|---|---|---|---|",
            f"| source | {min(sides)} | {statistics.median(sides):g} | {max(sides)} |",
            f"| stored | {min(out_sides)} | {statistics.median(out_sides):g} | {max(out_sides)} |",
            "",
            f"Stored JPEG bytes per image: median {statistics.median(o.nbytes for o in valid):g}.",
        ]
    lines += ["", f"## Quarantined ({len(quarantined)})", ""]
    if quarantined:
        lines += ["| file | reason |", "|---|---|"]
        lines += [f"| `{q.file}` | {q.reason} |" for q in quarantined[:_QUARANTINE_ROWS]]
        if len(quarantined) > _QUARANTINE_ROWS:
            lines.append(f"| ... | {len(quarantined) - _QUARANTINE_ROWS} more in manifest.json |")
    else:
        lines.append("None.")
    if ignored:
        lines += ["", f"Ignored files (first {min(len(ignored), _IGNORED_ROWS)}): "]
        lines += [f"- `{name}`" for name in ignored[:_IGNORED_ROWS]]
    return "\n".join(lines) + "\n"
