"""The seed's ImageDataGenerator augmentation as Keras layers, and exporting a model without them.

``augmentation_layers`` is the one augmentation both trainers use (inside the model, or mapped
over batches with XLA), in one of ``AUGMENTATIONS``:

- ``seed``: exactly what Keras 2's ``ImageDataGenerator(rotation_range=40, width_shift_range=0.2,
  height_shift_range=0.2, shear_range=0.2, zoom_range=0.2, horizontal_flip=True,
  fill_mode='nearest')`` does: ``apply_affine_transform`` reads ``shear_range`` in degrees, so the
  shear is at most 0.2 degrees (invisible).
- ``strong``: the same with a real shear, up to asin(0.2) = 11.5 degrees either way (a row offset
  of 0.2 pixel per pixel: what the seed's ``shear_range=0.2`` was presumably meant to do).

``RandomAffine`` is a registered Keras layer, defined on first use so importing this module stays
light. ``copy_weights_by_name`` builds the model that model.keras
holds: the trained one without its training-only layers.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from typing import Any

from catsdogs.components.common.errors import SettingsError

AUGMENTATIONS = ("seed", "strong")
# Maximum shear in degrees of each augmentation (ImageDataGenerator's shear_range unit).
SHEAR_DEGREES = {"seed": 0.2, "strong": math.degrees(math.asin(0.2))}


def check_augmentation(value: str) -> None:
    """Raise SettingsError unless ``value`` is one of ``AUGMENTATIONS``."""
    if value not in AUGMENTATIONS:
        raise SettingsError(
            f"augmentation must be one of {', '.join(AUGMENTATIONS)}, got {value!r}."
        )


def augmentation_layers(seed: int, name: str = "augmentation", *, kind: str = "seed") -> Any:
    """The seed's ImageDataGenerator augmentation as one Keras layer (active only in training).

    Rotation up to 40 degrees either way, shifts up to 20% of the height and width, shear up to
    ``SHEAR_DEGREES[kind]``, zoom in or out up to 20% along each axis independently, random
    horizontal flip, nearest fill. Works on float or uint8 batches ``[N, H, W, 3]`` (also inside a
    tf.data map); with ``training=False`` it is the identity.

    Args:
        seed: Seed of the random transforms.
        name: Name of the returned layer.
        kind: ``seed`` or ``strong`` (see the module docstring).

    All five transforms are composed into one ``RandomAffine`` layer: a single resampling per
    image, as ImageDataGenerator does (about 4x faster than the chain of Keras ``Random*`` layers
    that ``benchmarks/bench_scratch.py`` times beside it).
    """
    import keras

    check_augmentation(kind)
    affine = random_affine_class()
    return keras.Sequential(
        [affine(shear=SHEAR_DEGREES[kind], seed=seed, name="random_affine")], name=name
    )


def keras2_transforms(
    theta: Any,
    shift_rows: Any,
    shift_cols: Any,
    shear: Any,
    zoom_rows: Any,
    zoom_cols: Any,
    flip: Any,
    height: Any,
    width: Any,
) -> Any:
    """Per-image ``ImageProjectiveTransformV3`` parameters of Keras 2's ``apply_transform``.

    Keras 2 (``keras_preprocessing.image.apply_affine_transform``) maps each output pixel
    ``(row, col)`` to the input point ``M (row, col, 1)`` with ``M = C R(theta) T(shift_rows,
    shift_cols) S(shear) Z(zoom_rows, zoom_cols) C^-1`` in (row, col) coordinates, where
    ``S = [[1, -sin(shear)], [0, cos(shear)]]`` and ``C`` moves the origin to ``(height / 2 + 0.5,
    width / 2 + 0.5)`` (its centre convention), then flips the result left-right when ``flip``.
    Angles are in degrees, shifts in pixels; every argument but ``height`` and ``width`` has one
    value per image.

    Returns:
        float32 ``[N, 8]``: the output-to-input maps in (x = col, y = row) coordinates.
    """
    import tensorflow as tf

    theta = tf.cast(theta, tf.float32) * (math.pi / 180.0)
    shear = tf.cast(shear, tf.float32) * (math.pi / 180.0)
    cos, sin = tf.cos(theta), tf.sin(theta)
    zoom_rows, zoom_cols = tf.cast(zoom_rows, tf.float32), tf.cast(zoom_cols, tf.float32)
    shift_rows, shift_cols = tf.cast(shift_rows, tf.float32), tf.cast(shift_cols, tf.float32)
    # Linear part R S Z and translation R t, in (row, col) coordinates.
    m00, m01 = cos * zoom_rows, -(cos * tf.sin(shear) + sin * tf.cos(shear)) * zoom_cols
    m10, m11 = sin * zoom_rows, (cos * tf.cos(shear) - sin * tf.sin(shear)) * zoom_cols
    t0 = cos * shift_rows - sin * shift_cols
    t1 = sin * shift_rows + cos * shift_cols
    centre_r = tf.cast(height, tf.float32) / 2.0 + 0.5
    centre_c = tf.cast(width, tf.float32) / 2.0 + 0.5
    b0 = centre_r + t0 - m00 * centre_r - m01 * centre_c
    b1 = centre_c + t1 - m10 * centre_r - m11 * centre_c
    # Flipping the output left-right: col -> (width - 1) - col.
    last_col = tf.cast(width, tf.float32) - 1.0
    flip = tf.cast(flip, tf.bool)
    b0 = tf.where(flip, b0 + m01 * last_col, b0)
    b1 = tf.where(flip, b1 + m11 * last_col, b1)
    m01, m11 = tf.where(flip, -m01, m01), tf.where(flip, -m11, m11)
    zeros = tf.zeros_like(m00)
    # x_in = m11 x + m10 y + b1 ; y_in = m01 x + m00 y + b0
    return tf.stack([m11, m10, b1, m01, m00, b0, zeros, zeros], axis=1)


def apply_transforms(images: Any, transforms: Any, fill_mode: str = "nearest") -> Any:
    """Resample ``images`` [N, H, W, C] bilinearly with per-image ``transforms`` [N, 8]."""
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(images, tf.float32),
        transforms=transforms,
        output_shape=tf.shape(images)[1:3],
        fill_value=0.0,
        interpolation="BILINEAR",
        fill_mode=fill_mode.upper(),
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
        """ImageDataGenerator's random rotation, shift, shear, zoom and flip in one resampling.

        Draws the parameters as ``ImageDataGenerator.get_random_transform`` does and applies them
        as its ``apply_transform`` (``keras2_transforms``), bilinear, points outside the image
        taking the nearest edge pixel (``fill_mode``). Identity unless ``training``.

        Args:
            rotation: Maximum rotation in degrees, either way (``rotation_range``).
            shift: Maximum shift as a fraction of height and width, either way.
            shear: Maximum shear in degrees, either way (``shear_range``, read as Keras 2 does).
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
            count, height, width = shape[0], shape[1], shape[2]
            offsets = iter(range(8))

            def draw(low: float = 0.0, high: float = 1.0) -> Any:
                offset = next(offsets)
                seed = None if self.seed is None else self.seed + offset
                return tf.random.uniform([count], low, high, seed=seed)

            theta = draw(-self.rotation, self.rotation)
            shift_rows = draw(-self.shift, self.shift) * tf.cast(height, tf.float32)
            shift_cols = draw(-self.shift, self.shift) * tf.cast(width, tf.float32)
            shear = draw(-self.shear, self.shear)
            zoom_rows = draw(1.0 - self.zoom, 1.0 + self.zoom)
            zoom_cols = draw(1.0 - self.zoom, 1.0 + self.zoom)
            flip = draw() < 0.5 if self.horizontal_flip else tf.zeros([count], tf.bool)
            transforms = keras2_transforms(
                theta, shift_rows, shift_cols, shear, zoom_rows, zoom_cols, flip, height, width
            )
            out = apply_transforms(images, transforms, self.fill_mode)
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


def copy_weights_by_name(source: Any, target: Any, log: Callable[[str], None] | None = None) -> Any:
    """Copy each layer's weights from ``source`` into the same-named layer of ``target``.

    For exporting a model without its training-only layers (augmentation): build the inference
    model with the same layer names, copy, save. Every layer of ``target`` must exist in
    ``source``. The optimizer state is copied too when both optimizers hold the same variables;
    when they do not, ``log`` (default: stderr) is told why it was left out. Returns ``target``.
    """
    for layer in target.layers:
        layer.set_weights(source.get_layer(layer.name).get_weights())
    optimizer, trained = getattr(target, "optimizer", None), getattr(source, "optimizer", None)
    if optimizer is not None and trained is not None and trained.built:
        optimizer.build(target.trainable_variables)  # keep the optimizer state with the weights
        mine, theirs = list(optimizer.variables), list(trained.variables)
        why = ""
        if len(mine) != len(theirs):
            why = f"the trained optimizer holds {len(theirs)} variables, the copy's {len(mine)}"
        else:
            for a, b in zip(mine, theirs, strict=True):
                if tuple(a.shape) != tuple(b.shape):
                    why = (
                        f"variable {b.path} is {tuple(b.shape)} in the trained optimizer and "
                        f"{tuple(a.shape)} in the copy"
                    )
                    break
        if why:
            (log or _stderr)(
                f"Optimizer state not copied into {target.name}: {why}; the weights are copied, "
                "and training that resumes from this model starts its optimizer afresh."
            )
        else:
            for a, b in zip(mine, theirs, strict=True):
                a.assign(b)
    return target


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
