"""The seed's ImageDataGenerator augmentation as Keras layers, and exporting a model without them.

``augmentation_layers`` is the one augmentation both trainers use (inside the model, or mapped
over batches with XLA). ``RandomAffine`` and ``RandomShearX`` are registered Keras layers, defined
on first use so importing this module stays light. ``copy_weights_by_name`` builds the model that
model.keras holds: the trained one without its training-only layers.
"""

from __future__ import annotations

import functools
import math
from typing import Any


def augmentation_layers(seed: int, name: str = "augmentation", *, fused: bool = True) -> Any:
    """The seed's ImageDataGenerator augmentation as one Keras layer (active only in training).

    Same strengths as ``ImageDataGenerator(rotation_range=40, width_shift_range=0.2,
    height_shift_range=0.2, shear_range=0.2, zoom_range=0.2, horizontal_flip=True,
    fill_mode='nearest')``: rotation up to 40 degrees either way, shifts up to 20% of the width and
    height, shear along x up to 0.2 either way (ImageDataGenerator reads 0.2 as degrees, which is
    hardly visible; we use the strength its docs suggest), zoom in or out up to 20% along each
    axis independently, random horizontal flip, nearest fill. Works on float or uint8 batches
    ``[N, H, W, 3]`` (also inside a tf.data map); with ``training=False`` it is the identity.

    Args:
        seed: Seed of the random transforms.
        name: Name of the returned layer.
        fused: One ``RandomAffine`` layer composing all five transforms into a single resampling
            per image (as ImageDataGenerator does; about 4x faster), or, when False, the chain of
            Keras layers RandomRotation, RandomTranslation, RandomShear, RandomZoom, RandomFlip
            (one resampling each).
    """
    import keras

    fill = "nearest"
    if fused:
        affine = random_affine_class()
        return keras.Sequential([affine(seed=seed, name="random_affine")], name=name)
    shear = random_shear_class()
    return keras.Sequential(
        [
            keras.layers.RandomRotation(40 / 360, fill_mode=fill, seed=seed),
            keras.layers.RandomTranslation(0.2, 0.2, fill_mode=fill, seed=seed + 1),
            shear(0.2, fill_mode=fill, seed=seed + 2),
            keras.layers.RandomZoom(0.2, 0.2, fill_mode=fill, seed=seed + 3),
            keras.layers.RandomFlip("horizontal", seed=seed + 4),
        ],
        name=name,
    )


@functools.cache
def random_affine_class() -> Any:
    """The ``RandomAffine`` layer class (registered as ``catsdogs>RandomAffine``).

    Defined on first use so importing this module stays light; ``fit_resumable`` calls it before
    loading a checkpoint.
    """
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="catsdogs")
    class RandomAffine(keras.layers.Layer):  # type: ignore[misc]
        """Random rotation, shift, shear, zoom and horizontal flip in one bilinear resampling.

        Per image: the output-to-input pixel map ``centre + shift + R(angle) Sh(shear) Z(zx, zy)
        F (p - centre)``, as ImageDataGenerator.apply_affine_transform composes it; points outside
        the image take the nearest edge pixel (``fill_mode``). Identity unless ``training``.

        Args:
            rotation: Maximum rotation in degrees, either way.
            shift: Maximum shift as a fraction of width (x) and height (y), either way.
            shear: Maximum shear along x (x offset per unit of y), either way.
            zoom: Zoom factors drawn from [1 - zoom, 1 + zoom], independently per axis.
            horizontal_flip: Flip half of the images left-right.
            fill_mode: ``nearest``, ``reflect``, ``wrap`` or ``constant`` (zeros).
            seed: Op-level seed of the random draws.
        """

        def __init__(
            self,
            rotation: float = 40.0,
            shift: float = 0.2,
            shear: float = 0.2,
            zoom: float = 0.2,
            horizontal_flip: bool = True,
            fill_mode: str = "nearest",
            seed: int | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(**kwargs)
            if fill_mode not in ("nearest", "reflect", "wrap", "constant"):
                raise ValueError(
                    f"fill_mode must be nearest, reflect, wrap or constant, got {fill_mode!r}."
                )
            self.rotation, self.shift, self.shear, self.zoom = rotation, shift, shear, zoom
            self.horizontal_flip, self.fill_mode, self.seed = horizontal_flip, fill_mode, seed

        def call(self, images: Any, training: Any = None) -> Any:
            if not training:
                return images
            images = tf.convert_to_tensor(images)
            shape = tf.shape(images)
            count = shape[0]
            height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
            offsets = iter(range(8))

            def draw(low: float = 0.0, high: float = 1.0) -> Any:
                offset = next(offsets)
                seed = None if self.seed is None else self.seed + offset
                return tf.random.uniform([count], low, high, seed=seed)

            angle = draw(-self.rotation, self.rotation) * (math.pi / 180.0)
            shift_x = draw(-self.shift, self.shift) * width
            shift_y = draw(-self.shift, self.shift) * height
            shear = draw(-self.shear, self.shear)
            zoom_x = draw(1.0 - self.zoom, 1.0 + self.zoom)
            zoom_y = draw(1.0 - self.zoom, 1.0 + self.zoom)
            flip = tf.ones_like(angle)
            if self.horizontal_flip:
                flip = tf.where(draw() < 0.5, -1.0, 1.0)
            cos, sin = tf.cos(angle), tf.sin(angle)
            # A = R(angle) @ [[1, shear], [0, 1]] @ diag(zoom_x * flip, zoom_y)
            a00, a01 = cos * zoom_x * flip, (cos * shear - sin) * zoom_y
            a10, a11 = sin * zoom_x * flip, (sin * shear + cos) * zoom_y
            centre_x, centre_y = (width - 1.0) / 2.0, (height - 1.0) / 2.0
            b0 = centre_x + shift_x - a00 * centre_x - a01 * centre_y
            b1 = centre_y + shift_y - a10 * centre_x - a11 * centre_y
            zeros = tf.zeros_like(a00)
            transforms = tf.stack([a00, a01, b0, a10, a11, b1, zeros, zeros], axis=1)
            out = tf.raw_ops.ImageProjectiveTransformV3(
                images=tf.cast(images, tf.float32),
                transforms=transforms,
                output_shape=shape[1:3],
                fill_value=0.0,
                interpolation="BILINEAR",
                fill_mode=self.fill_mode.upper(),
            )
            return tf.cast(out, self.compute_dtype)

        def compute_output_shape(self, input_shape: Any) -> Any:
            return input_shape

        def get_config(self) -> dict[str, Any]:
            config: dict[str, Any] = super().get_config()
            config.update(
                rotation=self.rotation,
                shift=self.shift,
                shear=self.shear,
                zoom=self.zoom,
                horizontal_flip=self.horizontal_flip,
                fill_mode=self.fill_mode,
                seed=self.seed,
            )
            return config

    return RandomAffine


@functools.cache
def random_shear_class() -> Any:
    """``keras.layers.RandomShear`` along x, with a config that survives saving and loading.

    Keras 3.15's RandomShear stores its factor as ``(-f, f)`` and then refuses that range when the
    model is loaded; this subclass (registered as ``catsdogs>RandomShearX``) stores ``f`` only.
    Defined on first use so importing this module stays light; ``fit_resumable`` calls it before
    loading a checkpoint.
    """
    import keras

    @keras.saving.register_keras_serializable(package="catsdogs")
    class RandomShearX(keras.layers.RandomShear):  # type: ignore[misc]
        """Random shear along x by up to ``factor`` of the image, either direction."""

        def __init__(self, factor: float = 0.2, **kwargs: Any) -> None:
            kwargs.pop("x_factor", None)
            kwargs.pop("y_factor", None)
            super().__init__(x_factor=factor, y_factor=0.0, **kwargs)
            self.factor = factor

        def get_config(self) -> dict[str, Any]:
            config: dict[str, Any] = super().get_config()
            config.pop("x_factor", None)
            config.pop("y_factor", None)
            config["factor"] = self.factor
            return config

    return RandomShearX


def copy_weights_by_name(source: Any, target: Any) -> Any:
    """Copy each layer's weights from ``source`` into the same-named layer of ``target``.

    For exporting a model without its training-only layers (augmentation): build the inference
    model with the same layer names, copy, save. Every layer of ``target`` must exist in
    ``source``. Returns ``target``.
    """
    for layer in target.layers:
        layer.set_weights(source.get_layer(layer.name).get_weights())
    optimizer, trained = getattr(target, "optimizer", None), getattr(source, "optimizer", None)
    if optimizer is not None and trained is not None and trained.built:
        optimizer.build(target.trainable_variables)  # keep the optimizer state with the weights
        pairs = list(zip(optimizer.variables, trained.variables, strict=False))
        if len(optimizer.variables) == len(trained.variables) and all(
            tuple(a.shape) == tuple(b.shape) for a, b in pairs
        ):
            for mine, theirs in pairs:
                mine.assign(theirs)
    return target
