"""Plots, HTML pages and data URIs shared by the trainers, evaluate, render, predict and promote."""

from __future__ import annotations

import base64
import html
import io
import re
from typing import Any

import numpy as np


def png(figure: Any, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes (cropped to its content)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def data_uri(data: bytes, mime: str) -> str:
    """A ``data:`` URI for embedding a picture in a self-contained HTML page."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


# One look for every page (evaluation, run, curves, activations): readable type, quiet tables.
STYLE = """:root{--fg:#1f2328;--muted:#59636e;--line:#d1d9e0;--soft:#f6f8fa;--accent:#0969da;
--good:#1a7f37;--bad:#cf222e}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--fg);max-width:1180px;margin:0 auto;padding:1.2em 1.6em 3em;line-height:1.45}
h1{font-size:1.7em;margin:.3em 0 .2em}
h2{font-size:1.25em;margin:1.8em 0 .6em;padding-bottom:.25em;border-bottom:1px solid var(--line)}
h3{font-size:1.05em;margin:1.2em 0 .4em}
a{color:var(--accent)} code{background:var(--soft);padding:.1em .35em;border-radius:4px;
font-size:.9em;word-break:break-all}
table{border-collapse:collapse;margin:.5em 0 1em}
th,td{border:1px solid var(--line);padding:.35em .8em;text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:var(--muted)} .good{color:var(--good)} .bad{color:var(--bad)}
.lead{font-size:1.1em;margin:.4em 0 1em}
.cards{display:flex;flex-wrap:wrap;gap:.8em;margin:1em 0}
.card{border:1px solid var(--line);border-radius:8px;padding:.7em 1.1em;min-width:12em}
.card .label{color:var(--muted);font-size:.85em}
.card .big{font-size:1.6em;font-weight:600;margin:.1em 0}
figure{display:inline-table;margin:.4em .6em .8em 0;vertical-align:top;text-align:center;
font-size:.85em;color:var(--muted)} figcaption{display:table-caption;caption-side:bottom;
padding-top:.2em} figure img{max-width:100%} img{max-width:100%}
nav.toc{background:var(--soft);border:1px solid var(--line);border-radius:8px;padding:.5em 1.2em;
margin:1em 0} nav.toc ul{margin:.3em 0;padding-left:1.2em;columns:2}
nav.toc li{margin:.1em 0;break-inside:avoid}"""


def html_page(title: str, body: str, style: str = "") -> str:
    """A complete UTF-8 HTML page: ``title`` (escaped), the shared ``STYLE`` + ``style``, ``body``."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{STYLE}
{style}</style></head>
<body>{body}
</body></html>
"""


def _inline(text: str) -> str:
    """One line of Markdown as HTML: code spans, bold, backslash escapes; everything escaped."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        escaped = html.escape(part, quote=False)
        escaped = re.sub(r"\\([\\`*_{}\[\]()#+\-.!:|<>&])", r"\1", escaped)
        out.append(re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escaped))
    return "".join(out)


def markdown_html(text: str) -> str:
    """The Markdown the project's own reports write, as HTML (not a general Markdown parser).

    Headings (``#``), bullet lists (``- ``), pipe tables (the ``|---|`` row ends the header) and
    paragraphs; inline code, bold and backslash escapes. Every character of the text is escaped,
    so a file name in a report cannot inject markup.
    """
    out: list[str] = []
    block: list[str] = []
    kind = ""

    def flush() -> None:
        nonlocal kind
        if kind == "list":
            out.append("<ul>" + "".join(f"<li>{_inline(line)}</li>" for line in block) + "</ul>")
        elif kind == "table":
            rows = [line.strip().strip("|").split("|") for line in block]
            rows = [r for r in rows if not all(re.fullmatch(r"\s*:?-+:?\s*", c) for c in r)]
            head, *body = rows or [[]]
            html_rows = ["<tr>" + "".join(f"<th>{_inline(c.strip())}</th>" for c in head)]
            html_rows += [
                "<tr>" + "".join(f"<td>{_inline(c.strip())}</td>" for c in r) for r in body
            ]
            out.append("<table>" + "</tr>".join(html_rows) + "</tr></table>")
        elif kind == "para":
            out.append("<p>" + " ".join(_inline(line) for line in block) + "</p>")
        block.clear()
        kind = ""

    for line in text.splitlines():
        stripped = line.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        now = (
            "heading" if heading else "list" if stripped.startswith("- ")
            else "table" if stripped.startswith("|") else "para" if stripped else ""
        )  # fmt: skip
        if now != kind or now == "heading":
            flush()
        if heading:
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif now:
            kind = now
            block.append(stripped[2:] if now == "list" else stripped)
    flush()
    return "\n".join(out)


TRAIN_COLOR, VAL_COLOR = "#0969da", "#d1242f"


def figure(size: tuple[float, float]) -> Any:
    """A matplotlib ``Figure`` on the Agg backend (no display, no pyplot state)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def best_epoch(history: dict[str, list[float]]) -> int | None:
    """The 1-based epoch with the best validation accuracy (else lowest validation loss)."""
    if history.get("val_accuracy"):
        return int(np.argmax(history["val_accuracy"])) + 1
    if history.get("val_loss"):
        return int(np.argmin(history["val_loss"])) + 1
    return None


def plot_curves(history: dict[str, list[float]], title: str = "") -> bytes:
    """PNG of training vs validation accuracy and loss (see ``curves_figure``)."""
    return png(curves_figure(history, title))


def curves_figure(history: dict[str, list[float]], title: str = "") -> Any:
    """Training vs validation accuracy and loss, the seed's plot in two colours.

    Training is dots, validation a line (as the seed's 'bo' vs 'b'), in two colours; the epoch
    axis has whole-number ticks, and the best epoch (highest validation accuracy) is marked.
    """
    from matplotlib.ticker import MaxNLocator

    picture = figure((11, 4.2))
    axes = picture.subplots(1, 2)
    best = best_epoch(history)
    for axis, metric in zip(axes, ("accuracy", "loss"), strict=True):
        train, val = history.get(metric, []), history.get(f"val_{metric}", [])
        epochs = list(range(1, max(len(train), len(val)) + 1))
        if train:
            axis.plot(
                epochs[: len(train)],
                train,
                "o",
                color=TRAIN_COLOR,
                markersize=4,
                label=f"Training {metric}",
            )
        if val:
            axis.plot(
                epochs[: len(val)],
                val,
                "-",
                color=VAL_COLOR,
                linewidth=2,
                label=f"Validation {metric}",
            )
        if best is not None and best <= len(val):
            axis.axvline(best, color="grey", linestyle=":", linewidth=1.5)
            axis.plot(
                [best],
                [val[best - 1]],
                "*",
                color=VAL_COLOR,
                markersize=14,
                markeredgecolor="black",
                label=f"best epoch {best} ({val[best - 1]:.3f})",
            )
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if epochs:
            axis.set_xlim(0.5, len(epochs) + 0.5)
        axis.set_title(f"Training and validation {metric}")
        axis.set_xlabel("Epoch")
        if axis.lines:
            axis.legend(fontsize=9)
    if title:
        picture.suptitle(title)
    picture.tight_layout()
    return picture


def curves_html(curves_png: bytes, metrics: dict[str, Any], title: str = "Training curves") -> str:
    """A self-contained HTML page: the training curves (a PNG) and a table of the figures."""
    rows = "\n".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in sorted(metrics.items())
    )
    body = (
        f"<h2>{html.escape(title)}</h2><img alt='training curves' "
        f"src='{data_uri(curves_png, 'image/png')}'/><table>{rows}</table>"
    )
    return html_page(title, body, style="td{padding:2px 12px}")


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
