"""What a network sees: activation grids, enlarged channels, Grad-CAM and training curves.

For each image (given files, or a few from the test split of a prepared dataset), the output
folder (local or gs://) gets:

    <NN>-<image>/input.png                     the image as the model sees it
    <NN>-<image>/gradcam.png                   Grad-CAM of the predicted class over the image
    <NN>-<image>/channel-<layer>-<c>.png       chosen channels of one layer, enlarged
    <NN>-<image>/layers/<KK>-<layer>.png       every channel of every conv/pooling layer, tiled
    curves.png                                 training curves from the model's history.json
    index.html                                 one page embedding all of the above (base64 JPEG copies)

Convolution and pooling layers inside a nested backbone (``vgg16`` in a transfer model) are
reached by feeding the outer layers first: a prefix model runs the outer graph up to the backbone's
input, then a sub-model of the backbone exposes its inner layers; Grad-CAM continues from the
backbone's output through the outer head to the prediction.
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from catsdogs.components.common import images, records, storage
from catsdogs.components.evaluate import core as evaluate_core

DEFAULT_CHANNELS = (4, 7)  # what the seed shows for the first layer
HISTORY_FILE = "history.json"
INDEX_FILE = "index.html"


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    """What to render.

    Attributes:
        layer: Layer whose chosen channels are enlarged ("" = the first convolution layer). A
            layer inside a nested backbone may be named ``backbone/layer`` or just ``layer``.
        channels: Channels of ``layer`` to enlarge (empty = 4 and 7, clipped to the channel count).
        images_per_class: Test images per class rendered when no image is given.
        columns: Channels per row in the layer grids.
    """

    layer: str = ""
    channels: tuple[int, ...] = ()
    images_per_class: int = 2
    columns: int = 16

    def __post_init__(self) -> None:
        if any(c < 0 for c in self.channels):
            raise ValueError(f"channels must be >= 0, got {list(self.channels)}.")
        if not 1 <= self.images_per_class <= 50:
            raise ValueError(f"images_per_class must be in [1, 50], got {self.images_per_class}.")
        if not 1 <= self.columns <= 64:
            raise ValueError(f"columns must be in [1, 64], got {self.columns}.")


def parse_channels(text: str) -> tuple[int, ...]:
    """``"4,7"`` -> ``(4, 7)``; empty -> ``()``; a clear error for anything else."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"channels {text!r}: expected comma-separated channel numbers like '4,7'."
        ) from None


@dataclasses.dataclass(frozen=True)
class LayerRef:
    """One convolution or pooling layer, possibly inside a nested model."""

    path: str  # "conv1" or "vgg16/block1_conv1"
    layer: Any
    owner: Any | None  # the nested model holding it, None at the outer level

    @property
    def is_conv(self) -> bool:
        """Whether this is a convolution (Grad-CAM's candidates), not pooling."""
        import keras

        return isinstance(self.layer, _conv_types(keras))


def _conv_types(keras: Any) -> tuple[type, ...]:
    return (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)


def _pool_types(keras: Any) -> tuple[type, ...]:
    return (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)


def activation_layers(model: Any) -> list[LayerRef]:
    """Every conv and pooling layer in graph order, descending one level into nested models."""
    import keras

    kinds: Any = _conv_types(keras) + _pool_types(keras)
    refs: list[LayerRef] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            refs.extend(
                LayerRef(f"{layer.name}/{inner.name}", inner, layer)
                for inner in layer.layers
                if isinstance(inner, kinds)
            )
        elif isinstance(layer, kinds):
            refs.append(LayerRef(layer.name, layer, None))
    return refs


def find_layer(refs: list[LayerRef], name: str) -> LayerRef:
    """The layer called ``name`` (full path or unique short name), or a one-line error."""
    exact = [r for r in refs if r.path == name]
    matches = exact or [r for r in refs if r.path.rsplit("/", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    valid = ", ".join(r.path for r in refs)
    if not matches:
        raise ValueError(
            f"--layer {name!r} is not a convolution or pooling layer of the model; valid: {valid}."
        )
    raise ValueError(f"--layer {name!r} is ambiguous; use the full name, one of: {valid}.")


def default_layer(refs: list[LayerRef]) -> LayerRef:
    """The first convolution that is not a fixed preprocessing layer (``*_preprocess``)."""
    convs = [r for r in refs if r.is_conv]
    for ref in convs:
        if not ref.path.endswith("_preprocess"):
            return ref
    if convs:
        return convs[0]
    raise ValueError("The model has no convolution layer to render.")


def _outer_call(owner: Any) -> tuple[Any, Any]:
    """The symbolic input and output of the nested model ``owner`` in the outer graph."""
    node = owner._inbound_nodes[0]
    return node.input_tensors[0], node.output_tensors[0]


def build_probe(model: Any, refs: list[LayerRef]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A function: image batch -> ``{layer path: activations}`` for all ``refs``."""
    import keras

    outer = [r for r in refs if r.owner is None]
    parts: list[tuple[list[LayerRef], Any, Any]] = []
    if outer:
        parts.append((outer, None, keras.Model(model.input, [r.layer.output for r in outer])))
    owners = {id(r.owner): r.owner for r in refs if r.owner is not None}
    for owner in owners.values():
        inner = [r for r in refs if r.owner is owner]
        backbone_input, _ = _outer_call(owner)
        prefix = keras.Model(model.input, backbone_input)
        probe = keras.Model(owner.input, [r.layer.output for r in inner])
        parts.append((inner, prefix, probe))

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for part_refs, prefix, probe in parts:
            x = batch if prefix is None else prefix(batch, training=False)
            values = probe(x, training=False)
            values = values if isinstance(values, list | tuple) else [values]
            out.update({r.path: np.asarray(v) for r, v in zip(part_refs, values, strict=True)})
        return out

    return run


def grad_cam(model: Any, ref: LayerRef, batch: np.ndarray) -> tuple[np.ndarray, float]:
    """Grad-CAM of the predicted class at layer ``ref`` for one image; returns (map in [0, 1], P).

    The class score is P(positive) when the model predicts the positive class and 1 - P otherwise;
    the map is ReLU(sum_k w_k A_k) with w_k the spatial mean of d score / d A_k, scaled to max 1.
    """
    import keras
    import tensorflow as tf

    x = tf.convert_to_tensor(batch, dtype=tf.float32)
    with tf.GradientTape() as tape:
        if ref.owner is None:
            both = keras.Model(model.input, [ref.layer.output, model.output])
            conv, prediction = both(x, training=False)
        else:
            backbone_input, backbone_output = _outer_call(ref.owner)
            prefix = keras.Model(model.input, backbone_input)
            inner = keras.Model(ref.owner.input, [ref.layer.output, ref.owner.output])
            head = keras.Model(backbone_output, model.output)
            conv, features = inner(prefix(x, training=False), training=False)
            prediction = head(features, training=False)
        probability = tf.cast(tf.reshape(prediction, [-1])[0], tf.float32)
        score = tf.where(probability >= 0.5, probability, 1.0 - probability)
    gradients = tape.gradient(score, conv)
    conv_value = np.asarray(tf.cast(conv, tf.float32))[0]
    if gradients is None:
        return np.zeros(conv_value.shape[:2]), float(probability)
    weights = np.asarray(tf.reduce_mean(tf.cast(gradients, tf.float32), axis=(0, 1, 2)))
    cam = np.maximum(conv_value @ weights, 0.0)
    peak = float(cam.max())
    return (cam / peak if peak > 0 else cam), float(probability)


# ------------------------------------------------------------------------------- pictures


def normalize_channels(activation: np.ndarray) -> np.ndarray:
    """Each channel of ``[H, W, C]`` rescaled to 0-255 on its own; constant (dead) channels -> 0."""
    values = np.asarray(activation, dtype=np.float64)
    low = values.min(axis=(0, 1), keepdims=True)
    span = values.max(axis=(0, 1), keepdims=True) - low
    scaled = np.where(span > 1e-12, (values - low) / np.where(span > 1e-12, span, 1.0), 0.0)
    return np.round(scaled * 255).astype(np.uint8)


def _colorize(gray: np.ndarray, dead: np.ndarray | None = None) -> np.ndarray:
    from matplotlib import colormaps

    rgb = (colormaps["viridis"](gray.astype(np.float64) / 255.0)[..., :3] * 255).astype(np.uint8)
    if dead is not None:
        rgb[dead] = 0
    return rgb


def _upscale(image: np.ndarray, factor: int) -> np.ndarray:
    return image.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else image


def _shrink(channel: np.ndarray, max_cell: int) -> np.ndarray:
    """Bilinear downscale of one 0-255 map so that its longer side is ``max_cell``."""
    from PIL import Image

    height, width = channel.shape
    ratio = max_cell / max(height, width)
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    return np.asarray(Image.fromarray(channel).resize(size, Image.Resampling.BILINEAR))


def channel_grid(
    activation: np.ndarray,
    columns: int = 16,
    min_cell: int = 32,
    max_cell: int = 48,
    max_pixels: int = 262_144,
) -> np.ndarray:
    """All channels of one ``[H, W, C]`` activation tiled into an RGB picture (viridis, dead=black).

    Small maps are enlarged (nearest) to at least ``min_cell`` pixels, large ones shrunk to at most
    ``max_cell``, so a 64-channel 150x150 layer stays a picture a browser shows at once. Layers
    with hundreds of channels (deep backbones) get smaller cells, so that no grid holds much more
    than ``max_pixels`` and the page that embeds ~50 of them stays loadable in the KFP UI.
    """
    height, width, count = activation.shape
    scaled = normalize_channels(activation)
    span = activation.max(axis=(0, 1)) - activation.min(axis=(0, 1))
    side = max(height, width)
    budget_cell = max(4, int((max_pixels / count) ** 0.5))  # longest cell side within the budget
    factor = max(1, min(-(-min_cell // side), budget_cell // side))
    cells = [_upscale(scaled[..., c], factor) for c in range(count)]
    largest = min(max_cell, budget_cell)
    if side > largest:
        cells = [_shrink(cell, largest) for cell in cells]
    cell_h, cell_w = cells[0].shape
    gap = 1
    columns = min(columns, count)
    rows = -(-count // columns)
    grid = np.full((rows * (cell_h + gap) - gap, columns * (cell_w + gap) - gap, 3), 255, np.uint8)
    for channel, gray in enumerate(cells):
        row, col = divmod(channel, columns)
        cell = _colorize(gray)
        if span[channel] <= 1e-12:
            cell[:] = 0
        top, left = row * (cell_h + gap), col * (cell_w + gap)
        grid[top : top + cell_h, left : left + cell_w] = cell
    return grid


def enlarged_channel(activation: np.ndarray, channel: int, size: int = 256) -> np.ndarray:
    """One channel of ``[H, W, C]`` as an RGB picture about ``size`` pixels wide."""
    scaled = normalize_channels(activation[..., channel : channel + 1])[..., 0]
    factor = max(1, size // max(scaled.shape))
    return _colorize(_upscale(scaled, factor))


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``heatmap`` in [0, 1] resized over the RGB ``image`` with the jet colormap."""
    from matplotlib import colormaps
    from PIL import Image

    height, width = image.shape[:2]
    resized = Image.fromarray(np.uint8(np.clip(heatmap, 0, 1) * 255)).resize(
        (width, height), Image.Resampling.BILINEAR
    )
    colored = colormaps["jet"](np.asarray(resized) / 255.0)[..., :3] * 255
    return np.clip((1 - alpha) * image + alpha * colored, 0, 255).astype(np.uint8)


def jpeg_bytes(image: np.ndarray, quality: int = 85) -> bytes:
    """Encode an RGB ``uint8`` array as JPEG (the page's embedded copies)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an RGB ``uint8`` array as PNG."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def curves_png(history: Any) -> bytes | None:
    """Training vs validation accuracy and loss from a history (dict of lists or list of dicts)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if isinstance(history, list):
        keys = sorted({k for epoch in history for k in epoch})
        history = {k: [epoch.get(k) for epoch in history] for k in keys}
    if not isinstance(history, dict) or not history:
        return None
    figure = Figure(figsize=(10, 4))
    panels = figure.subplots(1, 2)
    for axes, metric in zip(panels, ("accuracy", "loss"), strict=True):
        for key, style in ((metric, "o-"), (f"val_{metric}", "-")):
            values = history.get(key)
            if values:
                epochs = range(1, len(values) + 1)
                axes.plot(
                    epochs, values, style, label="training" if key == metric else "validation"
                )
        axes.set_title(f"Training and validation {metric}")
        axes.set_xlabel("epoch")
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


# ------------------------------------------------------------------------------- the run


@dataclasses.dataclass(frozen=True)
class RenderResult:
    """What ``render`` wrote."""

    output: str
    files: list[str]  # relative names, index.html last
    predictions: list[dict[str, Any]]  # per image: name, p (P of classes[1]), label


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "image"


def _image_slug(name: str) -> str:
    """A folder name for one image: its name without the image suffix, made path-safe."""
    stem = name[: -len(Path(name).suffix)] if name.lower().endswith(images.IMAGE_SUFFIXES) else name
    return _slug(stem)


def test_images(data_uri: str, per_class: int) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """The first ``per_class`` test images of each class (full size), and the class names."""
    with records.local_dataset(data_uri, ("test",)) as (folder, manifest):
        classes = [str(c) for c in manifest["classes"]]
        wanted = dict.fromkeys(range(len(classes)), per_class)
        picked: list[tuple[str, np.ndarray]] = []
        for image, label, ident in records.read_split(
            folder, manifest, "test", None, with_ids=True
        ):
            index = int(label)
            if wanted.get(index, 0) > 0:
                wanted[index] -= 1
                picked.append((ident.numpy().decode("utf-8"), image.numpy()))
            if not any(wanted.values()):
                break
    picked.sort(key=lambda item: item[0])
    return picked, classes


def resolve_channels(ref: LayerRef, count: int, channels: tuple[int, ...]) -> list[int]:
    """The channels to enlarge: the given ones (checked) or the defaults clipped to ``count``."""
    if channels:
        bad = [c for c in channels if c >= count]
        if bad:
            raise ValueError(
                f"--channel {bad[0]}: layer {ref.path} has {count} channels (0 to {count - 1})."
            )
        return list(dict.fromkeys(channels))
    return list(dict.fromkeys(min(c, count - 1) for c in DEFAULT_CHANNELS))


def render(
    model_uri: str,
    output_uri: str,
    image_uris: list[str] | None = None,
    data_uri: str = "",
    config: RenderConfig | None = None,
    report_path: str | None = None,
) -> RenderResult:
    """Render activations, chosen channels, Grad-CAM and curves for a few images.

    Args:
        model_uri: Model folder (local or gs://) with model.keras (and history.json).
        output_uri: Folder (local or gs://) to write the PNGs and index.html into.
        image_uris: Image files (local or gs://); default: a few test images of ``data_uri``.
        data_uri: Prepared dataset, used when ``image_uris`` is empty (and for class names).
        config: Layer, channels, how many images.
        report_path: Also write index.html here (the KFP HTML artifact's file).
    """
    config = config or RenderConfig()
    if not image_uris and not data_uri:
        raise ValueError("Nothing to render: give --image files or --data with a test split.")
    classes = ["cat", "dog"]
    if image_uris:
        # Decode every image before any work, so a bad one fails fast with its name.
        sources = [(uri.rsplit("/", 1)[-1], images.load(uri)) for uri in image_uris]
        if data_uri:
            classes = [str(c) for c in records.load_manifest(data_uri)["classes"]]
    else:
        sources, classes = test_images(data_uri, config.images_per_class)
        if not sources:
            raise records.DatasetError(f"The test split of {data_uri} holds no images to render.")
    model = evaluate_core.load_model(model_uri)
    refs = activation_layers(model)
    chosen = find_layer(refs, config.layer) if config.layer else default_layer(refs)
    convs = [r for r in refs if r.is_conv]
    cam_layer = convs[-1]
    size = evaluate_core.image_size(model)
    probe = build_probe(model, refs)
    history_uri = storage.join(model_uri, HISTORY_FILE)
    history = json.loads(storage.read_text(history_uri)) if storage.exists(history_uri) else None

    pictures: dict[str, bytes] = {}
    embedded: dict[str, bytes] = {}
    sections: list[str] = []
    predictions: list[dict[str, Any]] = []
    for number, (name, original) in enumerate(sources, start=1):
        folder = f"{number:02d}-{_image_slug(name)}"
        model_view = images.resize(original, size) if size else original
        batch = model_view[None].astype(np.float32)
        activations = probe(batch)
        heatmap, probability = grad_cam(model, cam_layer, batch)
        label = classes[1] if probability >= 0.5 else classes[0]
        predictions.append({"image": name, "p": probability, "label": label})
        entry: list[tuple[str, str]] = []

        def add(
            relative: str, picture: np.ndarray, caption: str, entry: list[tuple[str, str]] = entry
        ) -> None:
            pictures[relative] = png_bytes(picture)
            # The page embeds JPEG copies: a deep backbone has ~50 layer grids per image, and
            # lossless copies would make a page of tens of MB that the KFP UI cannot show.
            embedded[relative] = jpeg_bytes(picture)
            entry.append((relative, caption))

        add(f"{folder}/input.png", model_view, f"{name} as the model sees it")
        add(
            f"{folder}/gradcam.png",
            overlay_heatmap(model_view, heatmap),
            f"Grad-CAM at {cam_layer.path} for the predicted class {label} "
            f"(P({classes[1]}) = {probability:.3f})",
        )
        chosen_value = activations[chosen.path][0]
        for channel in resolve_channels(chosen, chosen_value.shape[-1], config.channels):
            add(
                f"{folder}/channel-{_slug(chosen.path)}-{channel}.png",
                enlarged_channel(chosen_value, channel),
                f"{chosen.path}, channel {channel}",
            )
        for index, ref in enumerate(refs, start=1):
            value = activations[ref.path][0]
            add(
                f"{folder}/layers/{index:02d}-{_slug(ref.path)}.png",
                channel_grid(value, config.columns),
                f"{ref.path}: {value.shape[0]}x{value.shape[1]}, {value.shape[2]} channels",
            )
        sections.append(_section(name, label, probability, classes, entry, embedded))
    curves = curves_png(history) if history is not None else None
    if curves:
        pictures["curves.png"] = curves
    page = _index_html(model_uri, sections, curves)
    with storage.output_dir(output_uri) as out:
        for relative, data in pictures.items():
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (out / INDEX_FILE).write_text(page, encoding="utf-8")
    if report_path:
        storage.write_text(report_path, page)
    return RenderResult(str(output_uri), [*sorted(pictures), INDEX_FILE], predictions)


def _section(
    name: str,
    label: str,
    probability: float,
    classes: list[str],
    entry: list[tuple[str, str]],
    embedded: dict[str, bytes],
) -> str:
    figures = "".join(
        f'<figure><img src="{evaluate_core.data_uri(embedded[relative], "image/jpeg")}" '
        f'alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'
        for relative, caption in entry
    )
    return (
        f"<section><h2>{html.escape(name)}: predicted {html.escape(label)} "
        f"(P({html.escape(classes[1])}) = {probability:.3f})</h2>{figures}</section>"
    )


def _index_html(model_uri: str, sections: list[str], curves: bytes | None) -> str:
    curves_part = (
        f'<h2>Training curves</h2><img src="{evaluate_core.data_uri(curves, "image/png")}" '
        'alt="training curves">'
        if curves
        else "<p>No history.json in the model folder: no training curves.</p>"
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Activations</title>
<style>body{{font-family:sans-serif;margin:1.5em}} figure{{display:inline-block;margin:.5em;
vertical-align:top;max-width:100%}} figure img{{max-width:100%}} figcaption{{font-size:.8em}}</style>
</head><body><h1>What the network sees</h1>
<p>Model: <code>{html.escape(str(model_uri))}</code>. Each layer picture tiles all its channels,
each rescaled to its own range (viridis); black cells are dead channels.</p>
{curves_part}
{"".join(sections)}
</body></html>
"""
