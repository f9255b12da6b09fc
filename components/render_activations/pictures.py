"""Activations as pictures: per-channel scaling, channel grids, enlarged channels, heatmaps."""

from __future__ import annotations

import numpy as np
from catsdogs.components.common import images

_SMALLEST_SIDE = 64  # a picture shrunk below this is left out of a page instead


def normalize_channels(activation: np.ndarray) -> np.ndarray:
    """Each channel of ``[H, W, C]`` rescaled to 0-255 on its own; constant (dead) channels -> 0."""
    values = np.asarray(activation, dtype=np.float64)
    low = values.min(axis=(0, 1), keepdims=True)
    span = values.max(axis=(0, 1), keepdims=True) - low
    scaled = np.where(span > 1e-12, (values - low) / np.where(span > 1e-12, span, 1.0), 0.0)
    return np.round(scaled * 255).astype(np.uint8)


def _colorize(gray: np.ndarray) -> np.ndarray:
    from matplotlib import colormaps

    return (colormaps["viridis"](gray.astype(np.float64) / 255.0)[..., :3] * 255).astype(np.uint8)


def _upscale(image: np.ndarray, factor: int) -> np.ndarray:
    return image.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else image


def _shrink(channel: np.ndarray, max_cell: int) -> np.ndarray:
    """Bilinear downscale of one 0-255 map so that its longer side is ``max_cell``."""
    from PIL import Image

    height, width = channel.shape
    ratio = max_cell / max(height, width)
    size = (max(1, round(width * ratio)), max(1, round(height * ratio)))
    return np.asarray(Image.fromarray(channel).resize(size, Image.Resampling.BILINEAR))


def top_channels(activation: np.ndarray, count: int) -> list[int]:
    """The ``count`` channels of ``[H, W, C]`` with the highest mean activation, most active first.

    After a ReLU a channel's mean is how strongly, and how widely, its feature fired on this image;
    dead channels (all zero) come last. Ties keep the lower channel number first.
    """
    means = np.asarray(activation, dtype=np.float64).mean(axis=(0, 1))
    order = sorted(range(means.shape[0]), key=lambda c: (-means[c], c))
    return order[:count]


def _label(cell: np.ndarray, text: str) -> np.ndarray:
    """``text`` (a channel number) in the top-left corner of an RGB cell, white on black."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(cell)
    draw = ImageDraw.Draw(picture)
    box = draw.textbbox((0, 0), text)
    draw.rectangle((0, 0, box[2] + 3, box[3] + 2), fill=(0, 0, 0))
    draw.text((2, 1), text, fill=(255, 255, 255))
    return np.asarray(picture)


def channel_grid(
    activation: np.ndarray,
    columns: int = 16,
    min_cell: int = 32,
    max_cell: int = 48,
    max_pixels: int = 262_144,
    channels: list[int] | None = None,
) -> np.ndarray:
    """Channels of one ``[H, W, C]`` activation tiled into an RGB picture (viridis, dead=black).

    Small maps are enlarged (nearest) to at least ``min_cell`` pixels, large ones shrunk to at most
    ``max_cell``, so a 64-channel 150x150 layer stays a picture a browser shows at once. Layers
    with hundreds of channels (deep backbones) get smaller cells, so that no grid holds much more
    than ``max_pixels`` and the page that embeds ~50 of them stays loadable in the KFP UI.
    ``channels`` tiles only those (in that order), each labelled with its channel number.
    """
    if channels is not None:
        activation = np.asarray(activation)[..., list(channels)]
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
        if channels is not None and min(cell_h, cell_w) >= 24:
            cell = _label(cell, str(channels[channel]))
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


def _shrunk_jpeg(picture: np.ndarray, max_bytes: int) -> bytes | None:
    """A JPEG of ``picture`` shrunk until it fits ``max_bytes``; None below the smallest side."""
    side = max(picture.shape[:2])
    while side > _SMALLEST_SIDE:
        side = max(_SMALLEST_SIDE, int(side * 0.75))
        data = images.thumbnail_jpeg(picture, side)
        if len(data) <= max_bytes:
            return data
    return None


def fit_jpegs(pictures: dict[str, np.ndarray], budget: int) -> dict[str, bytes]:
    """JPEG copies of ``pictures`` whose sizes add up to at most ``budget`` bytes.

    Smallest first, each gets an equal share of what is left: pictures under their share stay
    whole (their savings go to the larger ones), larger ones are shrunk to fit, and a picture that
    does not fit even at 64 pixels is left out (absent from the result).
    """
    whole = {name: images.jpeg_bytes(picture) for name, picture in pictures.items()}
    fitted: dict[str, bytes] = {}
    left = budget
    order = sorted(whole, key=lambda name: (len(whole[name]), name))
    for index, name in enumerate(order):
        share = left // (len(order) - index)
        data = whole[name] if len(whole[name]) <= share else _shrunk_jpeg(pictures[name], share)
        if data is not None:
            fitted[name] = data
            left -= len(data)
    return fitted
