"""The serving graph: decode, orient, resize and score images inside a TensorFlow SavedModel.

The graph does in TensorFlow ops what ``catsdogs predict`` does with Pillow and
``images.resize``, so a served image gets the same probability (within float rounding):

- JPEG: ``decode_jpeg`` with ``INTEGER_ACCURATE`` (the DCT Pillow's libjpeg uses; TensorFlow's
  default, the fast DCT, differs by a few levels per pixel) and the EXIF orientation applied as
  ``ImageOps.exif_transpose`` does; PNG (and GIF/BMP): ``decode_image``, alpha dropped, grey
  expanded to RGB, as ``Image.convert("RGB")`` does;
- bilinear resize to the model's size, rounded and clipped to ``uint8`` (``images.resize``);
- the Keras model on ``float32`` pixels in [0, 255] (its preprocessing is inside it).

Signatures (inputs and outputs are batches):
    serving_default: ``image_bytes`` (tf.string, encoded JPEG or PNG) -> ``p_<positive class>``
        (float32) and ``label`` (tf.string).
    serving_pixels: ``pixels`` (float32 [N, height, width, 3] in [0, 255]) -> the same outputs.
"""

from __future__ import annotations

from typing import Any

BYTES_INPUT = "image_bytes"
PIXELS_INPUT = "pixels"
LABEL_OUTPUT = "label"
DEFAULT_SIGNATURE = "serving_default"
PIXELS_SIGNATURE = "serving_pixels"
THRESHOLD = 0.5  # P(positive) at or above it is the positive label, as in ``catsdogs predict``
EXIF_SCAN_BYTES = 1 << 17  # the APP1 (EXIF) segment sits in the first 64 KiB after SOI
_MAX_SEGMENTS = 64
_MAX_IFD_ENTRIES = 128
_ORIENTATION_TAG = 0x0112


def probability_output(classes: tuple[str, ...]) -> str:
    """The name of the output holding P(classes[1]), e.g. ``p_dog``."""
    return f"p_{classes[1]}"


def build(
    model: Any, size: tuple[int, int], classes: tuple[str, ...]
) -> tuple[Any, dict[str, Any]]:
    """A trackable module holding ``model`` and its two serving signatures.

    Args:
        model: The Keras model (raw RGB pixels in, one sigmoid unit out).
        size: ``(height, width)`` the model takes.
        classes: ``(negative, positive)`` class names.

    Returns:
        The module to save and the ``signatures`` argument of ``tf.saved_model.save``.
    """
    import tensorflow as tf

    module = tf.Module()
    module.model = model
    height, width = size
    pixel_spec = tf.TensorSpec([height, width, 3], tf.float32)
    names = tf.constant(list(classes[:2]))
    positive_name = probability_output(classes)

    def score(pixels: Any) -> dict[str, Any]:
        positive = tf.reshape(model(pixels, training=False), [-1])
        label = tf.where(positive >= THRESHOLD, names[1], names[0])
        return {positive_name: positive, LABEL_OUTPUT: label}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)])
    def serve_bytes(image_bytes: Any) -> dict[str, Any]:
        pixels = tf.map_fn(
            lambda data: resize(decode(data), size),
            image_bytes,
            fn_output_signature=pixel_spec,
        )
        return score(pixels)

    @tf.function(
        input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name=PIXELS_INPUT)]
    )
    def serve_pixels(pixels: Any) -> dict[str, Any]:
        return score(pixels)

    module.serve_bytes = serve_bytes
    module.serve_pixels = serve_pixels
    return module, {DEFAULT_SIGNATURE: serve_bytes, PIXELS_SIGNATURE: serve_pixels}


def decode(data: Any) -> Any:
    """Encoded image bytes (scalar tf.string) -> RGB ``uint8`` [H, W, 3], as ``images.decode``."""
    import tensorflow as tf

    def jpeg() -> Any:
        image = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")
        return orient(image, exif_orientation(data))

    def other() -> Any:
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    image = tf.cond(tf.io.is_jpeg(data), jpeg, other)
    return tf.ensure_shape(image, [None, None, 3])


def resize(image: Any, size: tuple[int, int]) -> Any:
    """Bilinear resize, rounded and clipped to ``uint8`` as ``images.resize``, then float32."""
    import tensorflow as tf

    resized = tf.image.resize(image, size, method="bilinear")
    return tf.cast(tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8), tf.float32)


def orient(image: Any, orientation: Any) -> Any:
    """Apply an EXIF orientation (1-8) the way Pillow's ``ImageOps.exif_transpose`` does."""
    import tensorflow as tf

    def transposed() -> Any:
        return tf.transpose(image, [1, 0, 2])

    branches = [
        lambda: image,  # 1 (and anything unknown): as stored
        lambda: tf.image.flip_left_right(image),  # 2
        lambda: tf.image.rot90(image, 2),  # 3
        lambda: tf.image.flip_up_down(image),  # 4
        transposed,  # 5: transpose
        lambda: tf.image.rot90(image, 3),  # 6: rotate 270 counter-clockwise
        lambda: tf.image.rot90(transposed(), 2),  # 7: transverse
        lambda: tf.image.rot90(image, 1),  # 8: rotate 90 counter-clockwise
    ]
    return tf.switch_case(orientation - 1, branches)


def exif_orientation(data: Any) -> Any:
    """The EXIF orientation tag (int32 1-8) of a JPEG's first APP1 Exif segment; 1 when absent."""
    import tensorflow as tf

    raw = tf.io.decode_raw(tf.strings.substr(data, 0, EXIF_SCAN_BYTES), tf.uint8)
    size = tf.size(raw)
    padded = tf.concat([tf.cast(raw, tf.int32), tf.zeros([16], tf.int32)], 0)

    def byte(index: Any) -> Any:
        return tf.gather(padded, tf.clip_by_value(index, 0, size + 15))

    def u16(index: Any, little: Any) -> Any:
        first, second = byte(index), byte(index + 1)
        return tf.where(little, first + 256 * second, 256 * first + second)

    def u32(index: Any, little: Any) -> Any:
        low, high = u16(index, little), u16(index + 2, little)
        return tf.where(little, low + 65536 * high, 65536 * low + high)

    big = tf.constant(False)
    exif_id = tf.constant([0x45, 0x78, 0x69, 0x66, 0, 0])  # b"Exif\0\0"

    def more(position: Any, found: Any) -> Any:
        marker = byte(position + 1)
        return (
            (found < 0)
            & (position + 4 <= size)
            & tf.equal(byte(position), 0xFF)
            & tf.not_equal(marker, 0xDA)  # start of scan: no metadata after it
            & tf.not_equal(marker, 0xD9)
        )

    def step(position: Any, found: Any) -> tuple[Any, Any]:
        length = u16(position + 2, big)
        is_exif = tf.equal(byte(position + 1), 0xE1) & tf.reduce_all(
            tf.equal(byte(position + 4 + tf.range(6)), exif_id)
        )
        found = tf.where(is_exif, position + 10, found)
        position = tf.where(length < 2, size, position + 2 + length)
        return position, found

    _, tiff = tf.while_loop(
        more, step, (tf.constant(2), tf.constant(-1)), maximum_iterations=_MAX_SEGMENTS
    )
    order = u16(tiff, big)
    little = tf.equal(order, 0x4949)
    valid = (tiff > 0) & (little | tf.equal(order, 0x4D4D))
    directory = tiff + u32(tiff + 4, little)
    entries = directory + 2 + 12 * tf.range(_MAX_IFD_ENTRIES)
    in_directory = tf.range(_MAX_IFD_ENTRIES) < u16(directory, little)
    matches = (
        in_directory & tf.equal(u16(entries, little), _ORIENTATION_TAG) & (entries + 10 <= size)
    )
    value = tf.gather(u16(entries + 8, little), tf.argmax(tf.cast(matches, tf.int32)))
    usable = valid & tf.reduce_any(matches) & (value >= 1) & (value <= 8)
    return tf.where(usable, value, 1)
