"""What a network sees: activation grids, enlarged channels, Grad-CAM and training curves.

For each image (given files, or a few from the test split of a prepared dataset), the output
folder (local or gs://) gets:

    <NN>-<image>/input.png                     the image as the model sees it
    <NN>-<image>/gradcam.png                   Grad-CAM of the predicted class over the image
    <NN>-<image>/channel-<layer>-<c>.png       chosen channels of one layer, enlarged
    <NN>-<image>/layers/<KK>-<layer>.png       every channel of every conv/pooling layer, tiled
    curves.png                                 training curves from the model's history.json
    index.html                                 one page embedding all of the above (base64 JPEG copies)

``layers.py`` finds the layers and computes activations and Grad-CAM, ``pictures.py`` turns them
into pictures and ``page.py`` lays out the page; this module picks the images and writes the files.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from catsdogs.components.common import errors, images, model_dir, records, reports, storage
from catsdogs.components.render_activations import layers, pictures
from catsdogs.components.render_activations.page import index_html, section_html

DEFAULT_CHANNELS = (4, 7)  # what the seed shows for the first layer
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
            raise errors.SettingsError(f"channels must be >= 0, got {list(self.channels)}.")
        if not 1 <= self.images_per_class <= 50:
            raise errors.SettingsError(
                f"images_per_class must be in [1, 50], got {self.images_per_class}."
            )
        if not 1 <= self.columns <= 64:
            raise errors.SettingsError(f"columns must be in [1, 64], got {self.columns}.")


def parse_channels(text: str) -> tuple[int, ...]:
    """``"4,7"`` -> ``(4, 7)``; empty -> ``()``; a ``SettingsError`` for anything else."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise errors.SettingsError(
            f"channels {text!r}: expected comma-separated channel numbers like '4,7'."
        ) from None


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
        classes = list(manifest.classes)
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


def resolve_channels(ref: layers.LayerRef, count: int, channels: tuple[int, ...]) -> list[int]:
    """The channels to enlarge: the given ones (checked) or the defaults clipped to ``count``."""
    if channels:
        bad = [c for c in channels if c >= count]
        if bad:
            raise errors.SettingsError(
                f"--channel {bad[0]}: layer {ref.path} has {count} channels (0 to {count - 1})."
            )
        return list(dict.fromkeys(channels))
    return list(dict.fromkeys(min(c, count - 1) for c in DEFAULT_CHANNELS))


def _training_curves(model_uri: str) -> bytes | None:
    """The curves PNG from the model folder's history.json (dict of lists or list of dicts)."""
    uri = storage.join(model_uri, model_dir.HISTORY_FILE)
    history = json.loads(storage.read_text(uri)) if storage.exists(uri) else None
    if isinstance(history, list):
        keys = sorted({k for epoch in history for k in epoch})
        history = {k: [epoch.get(k) for epoch in history] for k in keys}
    return reports.plot_curves(history) if isinstance(history, dict) and history else None


def _sources(
    image_uris: list[str] | None, data_uri: str, per_class: int
) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """The images to render (name, RGB pixels), decoded up front, and the class names."""
    if not image_uris and not data_uri:
        raise errors.SettingsError(
            "Nothing to render: give --image files or --data with a test split."
        )
    if not image_uris:
        sources, classes = test_images(data_uri, per_class)
        if not sources:
            raise errors.DatasetError(f"The test split of {data_uri} holds no images to render.")
        return sources, classes
    # Decode every image before any work, so a bad one fails fast with its name.
    sources = [(uri.rsplit("/", 1)[-1], images.load(uri)) for uri in image_uris]
    if data_uri:
        return sources, list(records.load_manifest(data_uri).classes)
    return sources, list(records.CLASSES)


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
    sources, classes = _sources(image_uris, data_uri, config.images_per_class)
    model = model_dir.load_model(model_uri)
    refs = layers.activation_layers(model)
    chosen = layers.find_layer(refs, config.layer) if config.layer else layers.default_layer(refs)
    cam_layer = [r for r in refs if r.is_conv][-1]
    size = model_dir.image_size(model)
    probe = layers.build_probe(model, refs)

    pictures_png: dict[str, bytes] = {}
    embedded: dict[str, bytes] = {}
    sections: list[str] = []
    predictions: list[dict[str, Any]] = []
    for number, (name, original) in enumerate(sources, start=1):
        folder = f"{number:02d}-{_image_slug(name)}"
        model_view = images.resize(original, size) if size else original
        batch = model_view[None].astype(np.float32)
        activations = probe(batch)
        heatmap, probability = layers.grad_cam(model, cam_layer, batch)
        label = classes[1] if probability >= 0.5 else classes[0]
        predictions.append({"image": name, "p": probability, "label": label})
        entry: list[tuple[str, str]] = []

        def add(
            relative: str, picture: np.ndarray, caption: str, entry: list[tuple[str, str]] = entry
        ) -> None:
            pictures_png[relative] = images.png_bytes(picture)
            # The page embeds JPEG copies: a deep backbone has ~50 layer grids per image, and
            # lossless copies would make a page of tens of MB that the KFP UI cannot show.
            embedded[relative] = images.jpeg_bytes(picture)
            entry.append((relative, caption))

        add(f"{folder}/input.png", model_view, f"{name} as the model sees it")
        add(
            f"{folder}/gradcam.png",
            pictures.overlay_heatmap(model_view, heatmap),
            f"Grad-CAM at {cam_layer.path} for the predicted class {label} "
            f"(P({classes[1]}) = {probability:.3f})",
        )
        chosen_value = activations[chosen.path][0]
        for channel in resolve_channels(chosen, chosen_value.shape[-1], config.channels):
            add(
                f"{folder}/channel-{_slug(chosen.path)}-{channel}.png",
                pictures.enlarged_channel(chosen_value, channel),
                f"{chosen.path}, channel {channel}",
            )
        for index, ref in enumerate(refs, start=1):
            value = activations[ref.path][0]
            add(
                f"{folder}/layers/{index:02d}-{_slug(ref.path)}.png",
                pictures.channel_grid(value, config.columns),
                f"{ref.path}: {value.shape[0]}x{value.shape[1]}, {value.shape[2]} channels",
            )
        sections.append(section_html(name, label, probability, classes, entry, embedded))
    curves = _training_curves(model_uri)
    if curves:
        pictures_png[model_dir.CURVES_FILE] = curves
    page = index_html(model_uri, sections, curves)
    with storage.output_dir(output_uri) as out:
        for relative, data in pictures_png.items():
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (out / INDEX_FILE).write_text(page, encoding="utf-8")
    if report_path:
        storage.write_text(report_path, page)
    return RenderResult(str(output_uri), [*sorted(pictures_png), INDEX_FILE], predictions)
