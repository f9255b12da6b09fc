"""What the network computes: its conv and pooling layers, their activations, and Grad-CAM.

Convolution and pooling layers inside a nested backbone (``vgg16`` in a transfer model) are
reached by feeding the outer layers first: a prefix model runs the outer graph up to the backbone's
input, then a sub-model of the backbone exposes its inner layers; Grad-CAM continues from the
backbone's output through the outer head to the prediction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from catsdogs.components.common import errors


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
    """The layer called ``name`` (full path or unique short name).

    Raises:
        SettingsError: No such layer, or the short name is ambiguous (the message lists them).
    """
    exact = [r for r in refs if r.path == name]
    matches = exact or [r for r in refs if r.path.rsplit("/", 1)[-1] == name]
    if len(matches) == 1:
        return matches[0]
    valid = ", ".join(r.path for r in refs)
    if not matches:
        raise errors.SettingsError(
            f"--layer {name!r} is not a convolution or pooling layer of the model; valid: {valid}."
        )
    raise errors.SettingsError(
        f"--layer {name!r} is ambiguous; use the full name, one of: {valid}."
    )


def default_layer(refs: list[LayerRef]) -> LayerRef:
    """The first convolution that is not a fixed preprocessing layer (``*_preprocess``)."""
    convs = [r for r in refs if r.is_conv]
    for ref in convs:
        if not ref.path.endswith("_preprocess"):
            return ref
    if convs:
        return convs[0]
    raise errors.ModelError("The model has no convolution layer to render.")


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
