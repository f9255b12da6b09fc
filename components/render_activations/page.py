"""The render's ``index.html``: a table of contents, the training curves, one section per image.

Each image's section shows first what the network decided and where it looked (the input, the
Grad-CAM overlay, the chosen channels), then what each layer sees, from the first convolution to
the last pooling layer. Deep layers (hundreds of channels at a few pixels) show their most active
channels, numbered, rather than every tile.

The KFP UI loads an HTML artifact whole into an iframe, with no size limit, so the page embeds JPEG
copies fitted to a byte budget; the full-resolution PNGs stay in the picture folder beside it.
"""

from __future__ import annotations

import html
import re

from catsdogs.components.common.reports import data_uri, html_page

STYLE = """section{margin-top:1.5em} .layers figure{max-width:48%}
figure{max-width:100%} figure img{border:1px solid var(--line)}
.pred{font-weight:normal;color:var(--muted)} nav.toc .sub{font-size:.85em;color:var(--muted)}
nav.toc ul ul{columns:1;padding-left:1em}"""

LAYER_FOLDER = "/layers/"


def anchor(relative: str) -> str:
    """An HTML id for a picture or a section, from its relative file name."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", relative).strip("-") or "top"


def section_html(
    name: str,
    label: str,
    probability: float,
    classes: list[str],
    entry: list[tuple[str, str]],
    embedded: dict[str, bytes],
    section_id: str = "",
) -> str:
    """One image's part of the page: its prediction and its pictures with captions.

    Args:
        name: The image's name.
        label: The predicted class.
        probability: P(``classes[1]``).
        classes: Class names.
        entry: ``(relative file name, caption)`` of each picture, in page order; the layer grids
            are those under ``<image>/layers/``.
        embedded: The JPEG copy of each picture, by relative file name; a picture without one
            (over the page's budget) gets its caption and file name only.
        section_id: The section's HTML id (the table of contents links to it).
    """
    first = [(r, c) for r, c in entry if LAYER_FOLDER not in r]
    grids = [(r, c) for r, c in entry if LAYER_FOLDER in r]
    sid = f' id="{html.escape(section_id)}"' if section_id else ""
    return (
        f"<section{sid}><h2>{html.escape(name)} <span class=pred>predicted "
        f"{html.escape(label)}, P({html.escape(classes[1])}) = {probability:.3f}</span></h2>"
        "<h3>What it decided and where it looked</h3>"
        + "".join(_figure(r, c, embedded.get(r)) for r, c in first)
        + ("<h3>Layer by layer</h3><div class=layers>" if grids else "")
        + "".join(_figure(r, c, embedded.get(r)) for r, c in grids)
        + ("</div>" if grids else "")
        + "</section>"
    )


def _figure(relative: str, caption: str, jpeg: bytes | None) -> str:
    text = html.escape(caption)
    fid = anchor(relative)
    if jpeg is None:
        return (
            f'<figure id="{fid}"><figcaption>{text}: left out of this page (size budget); full '
            f"resolution in the picture folder, <code>{html.escape(relative)}</code></figcaption>"
            "</figure>"
        )
    return (
        f'<figure id="{fid}"><img src="{data_uri(jpeg, "image/jpeg")}" alt="{text}">'
        f"<figcaption>{text}</figcaption></figure>"
    )


def toc_html(items: list[tuple[str, str, list[tuple[str, str]]]], curves: bool) -> str:
    """The table of contents: the curves, then each image with links to its layers.

    Args:
        items: ``(section id, title, [(picture id, layer name)])`` per image.
        curves: Whether the page has the training curves.
    """
    entries = ['<li><a href="#curves">Training curves</a></li>'] if curves else []
    for section_id, title, layer_links in items:
        sub = ", ".join(
            f'<a href="#{html.escape(fid)}">{html.escape(layer)}</a>' for fid, layer in layer_links
        )
        entries.append(
            f'<li><a href="#{html.escape(section_id)}">{html.escape(title)}</a>'
            + (f"<div class=sub>{sub}</div>" if sub else "")
            + "</li>"
        )
    return f"<nav class=toc><b>Contents</b><ul>{''.join(entries)}</ul></nav>"


def index_html(
    model_uri: str,
    sections: list[str],
    curves: bytes | None,
    budget: int,
    toc: list[tuple[str, str, list[tuple[str, str]]]] | None = None,
) -> str:
    """The whole page: the model, a table of contents, the training curves, one section per image."""
    curves_part = (
        f'<h2 id="curves">Training curves</h2><img src="{data_uri(curves, "image/png")}" '
        'alt="training curves">'
        if curves
        else "<p>No history.json in the model folder: no training curves.</p>"
    )
    body = f"""<h1>What the network sees</h1>
<p class=lead>Model <code>{html.escape(str(model_uri))}</code>.</p>
<p>For each image: the prediction, a Grad-CAM overlay (red: the regions that pushed the model
towards its answer), chosen channels enlarged, then every convolution and pooling layer. Each
channel is rescaled to its own range (viridis: dark low, yellow high); black cells are dead
channels. Deep layers show only their most active channels, numbered. The pictures are JPEG copies,
shrunk where needed to keep this page under {budget / 1e6:.1f} MB for the Kubeflow UI; the
full-resolution PNGs are in the picture folder (<code>NN-image/layers/KK-layer.png</code>).</p>
{toc_html(toc or [], bool(curves))}
{curves_part}
{"".join(sections)}"""
    return html_page("Activations", body, STYLE)
