"""The render's ``index.html``: one section per image, plus the training curves.

The KFP UI loads an HTML artifact whole into an iframe, with no size limit, so the page embeds JPEG
copies fitted to a byte budget; the full-resolution PNGs stay in the picture folder beside it.
"""

from __future__ import annotations

import html

from catsdogs.components.common.reports import data_uri, html_page

STYLE = """figure{display:inline-block;margin:.5em;
vertical-align:top;max-width:100%} figure img{max-width:100%} figcaption{font-size:.8em}"""


def section_html(
    name: str,
    label: str,
    probability: float,
    classes: list[str],
    entry: list[tuple[str, str]],
    embedded: dict[str, bytes],
) -> str:
    """One image's part of the page: its prediction and its pictures with captions.

    Args:
        name: The image's name.
        label: The predicted class.
        probability: P(``classes[1]``).
        classes: Class names.
        entry: ``(relative file name, caption)`` of each picture, in page order.
        embedded: The JPEG copy of each picture, by relative file name; a picture without one
            (over the page's budget) gets its caption and file name only.
    """
    figures = "".join(
        _figure(relative, caption, embedded.get(relative)) for relative, caption in entry
    )
    return (
        f"<section><h2>{html.escape(name)}: predicted {html.escape(label)} "
        f"(P({html.escape(classes[1])}) = {probability:.3f})</h2>{figures}</section>"
    )


def _figure(relative: str, caption: str, jpeg: bytes | None) -> str:
    text = html.escape(caption)
    if jpeg is None:
        return (
            f"<figure><figcaption>{text}: left out of this page (size budget); full resolution "
            f"in the picture folder, <code>{html.escape(relative)}</code></figcaption></figure>"
        )
    return (
        f'<figure><img src="{data_uri(jpeg, "image/jpeg")}" alt="{text}">'
        f"<figcaption>{text}</figcaption></figure>"
    )


def index_html(model_uri: str, sections: list[str], curves: bytes | None, budget: int) -> str:
    """The whole page: the model, the training curves (when known), then one section per image."""
    curves_part = (
        f'<h2>Training curves</h2><img src="{data_uri(curves, "image/png")}" alt="training curves">'
        if curves
        else "<p>No history.json in the model folder: no training curves.</p>"
    )
    body = f"""<h1>What the network sees</h1>
<p>Model: <code>{html.escape(str(model_uri))}</code>. Each layer picture tiles all its channels,
each rescaled to its own range (viridis); black cells are dead channels. The pictures here are JPEG
copies, shrunk where needed to keep this page under {budget / 1e6:.1f} MB for the Kubeflow UI; the
full-resolution PNGs are in the picture folder (<code>NN-image/layers/KK-layer.png</code>).</p>
{curves_part}
{"".join(sections)}"""
    return html_page("Activations", body, STYLE)
