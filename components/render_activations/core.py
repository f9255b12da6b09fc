"""What a network sees: activation grids, enlarged channels, Grad-CAM and training curves.

For each image (given files, or a few from the test split of a prepared dataset), the output
folder (local, gs:// or s3://) gets:

    <NN>-<image>/input.png                     the image as the model sees it
    <NN>-<image>/gradcam.png                   Grad-CAM of the predicted class over the image
    <NN>-<image>/channel-<layer>-<c>.png       chosen channels of one layer, enlarged
    <NN>-<image>/layers/<KK>-<layer>.png       every channel of every conv/pooling layer, tiled
    curves.png                                 training curves from the model's history.json
    index.html                                 one page embedding all of the above (base64 JPEG copies)

The page stays under ``RenderSettings.page_bytes`` (3 MB): the Kubeflow UI loads an HTML artifact
whole into an iframe, and a VGG16 render embeds ~80 pictures. Its JPEG copies share that budget
(``pictures.fit_jpegs``: small ones whole, large grids shrunk, what cannot fit left out with a note);
the PNG files in the folder keep full resolution. The KFP wrapper writes the folder as an artifact
of its own beside the HTML one.

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
from catsdogs.components.render_activations.page import anchor, index_html, section_html

DEFAULT_CHANNELS = (4, 7)  # what the seed shows for the first layer
WHOLE_UP_TO = 64  # a layer with more channels shows only its most active ones (top_channels)
INDEX_FILE = "index.html"


@dataclasses.dataclass(frozen=True)
class RenderSettings:
    """What to render.

    Attributes:
        layer: Layer whose chosen channels are enlarged ("" = the first convolution layer). A
            layer inside a nested backbone may be named ``backbone/layer`` or just ``layer``.
        channels: Channels of ``layer`` to enlarge (empty = 4 and 7, clipped to the channel count).
        images_per_class: Test images per class rendered when no image is given.
        columns: Channels per row in the layer grids.
        top_channels: How many of its most active channels a layer of more than ``WHOLE_UP_TO``
            channels shows (its 512 tiles of 4x4 pixels would be noise).
        page_bytes: Most bytes index.html may take (the KFP UI loads it whole).
    """

    layer: str = ""
    channels: tuple[int, ...] = ()
    images_per_class: int = 2
    columns: int = 16
    top_channels: int = 32
    page_bytes: int = 3_000_000

    def __post_init__(self) -> None:
        if any(c < 0 for c in self.channels):
            raise errors.SettingsError(f"channels must be >= 0, got {list(self.channels)}.")
        if not 1 <= self.images_per_class <= 50:
            raise errors.SettingsError(
                f"images_per_class must be in [1, 50], got {self.images_per_class}."
            )
        if not 1 <= self.columns <= 64:
            raise errors.SettingsError(f"columns must be in [1, 64], got {self.columns}.")
        if not 1 <= self.top_channels <= WHOLE_UP_TO:
            raise errors.SettingsError(
                f"top_channels must be in [1, {WHOLE_UP_TO}], got {self.top_channels}."
            )
        if self.page_bytes < 50_000:
            raise errors.SettingsError(f"page_bytes must be >= 50000, got {self.page_bytes}.")


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
    failed: list[dict[str, str]] = dataclasses.field(default_factory=list)  # image, error


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "image"


def _image_slug(name: str) -> str:
    """A folder name for one image: its name without the image suffix, made path-safe."""
    stem = name[: -len(Path(name).suffix)] if name.lower().endswith(images.IMAGE_SUFFIXES) else name
    return _slug(stem)


def test_images(
    dataset: records.Dataset, per_class: int
) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
    """The first ``per_class`` test images of each class (full size), and the class names."""
    with records.local_dataset(dataset, ("test",)) as (folder, manifest):
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


def layer_grid(path: str, value: np.ndarray, config: RenderSettings) -> tuple[np.ndarray, str]:
    """One layer's picture and caption: every channel, or the most active ones of a deep layer."""
    height, width, count = value.shape
    if count <= WHOLE_UP_TO:
        grid = pictures.channel_grid(value, config.columns)
        return grid, f"{path}: {height}x{width}, {count} channels"
    top = pictures.top_channels(value, config.top_channels)
    grid = pictures.channel_grid(value, 8, min_cell=64, max_cell=96, channels=top)
    caption = (
        f"{path}: {height}x{width}, the {len(top)} most active of its {count} channels "
        "(highest mean activation first; each labelled with its channel number)"
    )
    return grid, caption


def _training_curves(model_uri: str) -> bytes | None:
    """The curves PNG from the model folder's history.json (dict of lists or list of dicts)."""
    uri = storage.join(model_uri, model_dir.HISTORY_FILE)
    history = json.loads(storage.read_text(uri)) if storage.exists(uri) else None
    if isinstance(history, list):
        keys = sorted({k for epoch in history for k in epoch})
        history = {k: [epoch.get(k) for epoch in history] for k in keys}
    return reports.plot_curves(history) if isinstance(history, dict) and history else None


def _decode_all(image_uris: list[str]) -> tuple[list[tuple[str, np.ndarray]], list[dict[str, str]]]:
    """Decode every image up front; an unreadable one (a pixel bomb...) is a per-file error.

    Raises:
        ImageError: Not one image could be read (the first error, and how many failed).
    """
    sources: list[tuple[str, np.ndarray]] = []
    failed: list[dict[str, str]] = []
    for uri in image_uris:
        try:
            sources.append((uri.rsplit("/", 1)[-1], images.load(uri)))
        except errors.ImageError as error:
            failed.append({"image": uri, "error": str(error)})
    if not sources:
        more = f" ({len(failed)} images, none readable)" if len(failed) > 1 else ""
        raise errors.ImageError(f"{failed[0]['error']}{more}")
    return sources, failed


def _sources(
    image_uris: list[str] | None, data_uri: str, per_class: int
) -> tuple[list[tuple[str, np.ndarray]], list[str], list[dict[str, str]]]:
    """The images to render (name, RGB pixels), the class names and the images that failed."""
    if not image_uris and not data_uri:
        raise errors.SettingsError(
            "Nothing to render: give --image files or --data with a test split."
        )
    if not image_uris:
        sources, classes = test_images(records.Dataset.open(data_uri), per_class)
        if not sources:
            raise errors.DatasetError(f"The test split of {data_uri} holds no images to render.")
        return sources, classes, []
    sources, failed = _decode_all(image_uris)
    if data_uri:
        return sources, list(records.load_manifest(data_uri).classes), failed
    return sources, list(records.CLASSES), failed


def _page(
    model_uri: str,
    entries: list[tuple[str, str, float, list[tuple[str, str]]]],
    classes: list[str],
    shown: dict[str, np.ndarray],
    curves: bytes | None,
    budget: int,
) -> str:
    """index.html with JPEG copies of ``shown`` fitted into what the text leaves of ``budget``."""
    toc = [
        (
            anchor(entry[0][0].split("/", 1)[0]) if entry else anchor(name),
            f"{name}: {label}",
            [(anchor(r), c.split(":", 1)[0]) for r, c in entry if "/layers/" in r],
        )
        for name, label, _, entry in entries
    ]

    def page(embedded: dict[str, bytes]) -> str:
        sections = [
            section_html(name, label, probability, classes, entry, embedded, toc[i][0])
            for i, (name, label, probability, entry) in enumerate(entries)
        ]
        return index_html(model_uri, sections, curves, budget, toc)

    text = len(page({}).encode("utf-8"))
    # base64 takes 4 bytes for 3; each <img> tag and data: prefix about 200 bytes more.
    room = (budget - text - 200 * len(shown)) * 3 // 4
    return page(pictures.fit_jpegs(shown, max(room, 0)))


def render(
    model_uri: str,
    output_uri: str,
    image_uris: list[str] | None = None,
    data_uri: str = "",
    config: RenderSettings | None = None,
    report_path: str | None = None,
) -> RenderResult:
    """Render activations, chosen channels, Grad-CAM and curves for a few images.

    Args:
        model_uri: Model folder (local, gs:// or s3://) with model.keras (and history.json).
        output_uri: Folder (local, gs:// or s3://) to write the PNGs and index.html into.
        image_uris: Image files (local, gs:// or s3://); default: a few test images of ``data_uri``.
            An unreadable one is left out and listed in ``RenderResult.failed``.
        data_uri: Prepared dataset, used when ``image_uris`` is empty (and for class names).
        config: Layer, channels, how many images.
        report_path: Also write index.html here (the KFP HTML artifact's file).
    """
    config = config or RenderSettings()
    sources, classes, failed = _sources(image_uris, data_uri, config.images_per_class)
    model_uri = model_dir.resolve(model_uri).folder
    model = model_dir.load_model(model_uri)
    refs = layers.activation_layers(model)
    chosen = layers.find_layer(refs, config.layer) if config.layer else layers.default_layer(refs)
    cam_layer = [r for r in refs if r.is_conv][-1]
    size = model_dir.image_size(model)
    probe = layers.build_probe(model, refs)

    pictures_png: dict[str, bytes] = {}
    shown: dict[str, np.ndarray] = {}  # embedded once all are known: they share the page budget
    entries: list[tuple[str, str, float, list[tuple[str, str]]]] = []
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
            shown[relative] = picture
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
                *layer_grid(ref.path, value, config),
            )
        entries.append((name, label, probability, entry))
    curves = _training_curves(model_uri)
    if curves:
        pictures_png[model_dir.CURVES_FILE] = curves
    page = _page(model_uri, entries, classes, shown, curves, config.page_bytes)
    with storage.output_dir(output_uri) as out:
        for relative, data in pictures_png.items():
            target = out / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (out / INDEX_FILE).write_text(page, encoding="utf-8")
    if report_path:
        storage.write_text(report_path, page)
    return RenderResult(str(output_uri), [*sorted(pictures_png), INDEX_FILE], predictions, failed)
