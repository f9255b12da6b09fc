"""``quality_report.md``: what was found, kept, quarantined and ignored, and the image sizes.

Every name and reason in it comes from the source (file names, decoder messages), so each one is
escaped (``escape``): no file name can break the Markdown tables or inject markup into a viewer
such as the Kubeflow UI's.
"""

from __future__ import annotations

import html
import json
import re
import statistics

from catsdogs.components.common.records import SPLITS, Manifest
from catsdogs.components.prepare_dataset.validation import Outcome

REPORT = "quality_report.md"
_QUARANTINE_ROWS = 500  # the manifest lists them all
_IGNORED_ROWS = 10
DEGENERATE_SIDE = 32  # a valid image whose shorter side is below this is flagged as degenerate
# Markdown's active punctuation (":" too: it stops "scheme://" autolinks); "<", ">", "&" become
# HTML entities. Left alone: "." and the rest, which mean nothing inside a table cell or list item.
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-!|~:])")


def escape(text: str) -> str:
    """``text`` as literal Markdown on one line: no markup, links or HTML, no table break."""
    visible = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return html.escape(_MARKDOWN_PUNCTUATION.sub(r"\\\1", visible), quote=False)


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
        f"- Source: {escape(str(manifest.source))}",
        f"- Source fingerprint: `{manifest.source_fingerprint}`",
        f"- Labelled images found: {sum(found.values())} "
        f"({', '.join(f'{c}: {n}' for c, n in found.items())})",
        f"- Valid: {len(valid)}; quarantined: {len(quarantined)}; other files "
        f"ignored (no image suffix or no class): {len(ignored)}",
        f"- Settings: {escape(json.dumps(manifest.settings, sort_keys=True))}",
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
            f"Kept as they were (baseline RGB JPEG within max_side, upright): "
            f"{sum(o.kept for o in valid)}; re-encoded: {sum(not o.kept for o in valid)}.",
        ]
    lines += ["", f"## Quarantined ({len(quarantined)})", ""]
    if quarantined:
        lines += ["| file | reason |", "|---|---|"]
        lines += [
            f"| {escape(q.file)} | {escape(q.reason)} |" for q in quarantined[:_QUARANTINE_ROWS]
        ]
        if len(quarantined) > _QUARANTINE_ROWS:
            lines.append(f"| ... | {len(quarantined) - _QUARANTINE_ROWS} more in manifest.json |")
    else:
        lines.append("None.")
    if ignored:
        lines += ["", f"Ignored files (first {min(len(ignored), _IGNORED_ROWS)}): "]
        lines += [f"- {escape(name)}" for name in ignored[:_IGNORED_ROWS]]
    degenerate = [(n, o) for n, o in outcomes.items() if o.ok and min(o.original) < DEGENERATE_SIDE]
    lines += ["", f"## Degenerate images ({len(degenerate)})", ""]
    if degenerate:
        lines += [
            f"Kept, but smaller than {DEGENERATE_SIDE} pixels on a side: check they are photos.",
            "",
            "| file | width x height |",
            "|---|---|",
        ]
        lines += [f"| {escape(n)} | {o.original[0]}x{o.original[1]} |" for n, o in degenerate]
    else:
        lines.append("None.")
    return "\n".join(lines) + "\n"
