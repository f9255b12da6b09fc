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

from catsdogs.components.common import images

BYTES_INPUT = "image_bytes"
PIXELS_INPUT = "pixels"
LABEL_OUTPUT = "label"
DEFAULT_SIGNATURE = "serving_default"
PIXELS_SIGNATURE = "serving_pixels"
THRESHOLD = 0.5  # P(positive) at or above it is the positive label, as in ``catsdogs predict``
_ORIENTATION_TAG = 0x0112
_TIFF_TYPES = [*range(1, 14), 16]  # the TIFF field types Pillow's IFD reader loads
_XMP_ID = b"http://ns.adobe.com/xap/1.0/\x00"
# Pillow's re.search(rb'tiff:Orientation(="|>)([0-9])'), as a full match whose prefix is lazy.
_XMP_ORIENTATION_FULL = r'(?s)(.*?)tiff:Orientation(?:="|>)([0-9]).*'


def quiet_optimizer() -> None:
    """Turn off Grappler's loop optimizer, which warns once per graph about ``map_fn``'s cond.

    It prints ``W0000 ... loop_optimizer.cc] Skipping loop optimization for Merge node with
    control input`` (and optimizes nothing here: the loop is the per-image decode).
    """
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({"loop_optimization": False})


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
        image = images.decode_jpeg(data)
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
    r"""The orientation (int32 1-8) Pillow's ``ImageOps.exif_transpose`` applies to a JPEG; else 1.

    A port of what Pillow 13 reads (``JpegImagePlugin.JpegImageFile._open`` and ``APP``,
    ``Image.Image.getexif``), over the whole header up to the start of scan with no segment or byte
    cap: non-0xFF bytes are skipped one at a time, 0xFF fill bytes before a marker too, markers
    without a length (RSTn, SOI, EOI, JPGn, 0xFF00) take two bytes, every other one skips its
    length. The first ``Exif\0\0`` APP1 segment gives the TIFF header and IFD0, whose last
    orientation entry (0x0112) counts; when IFD0 has none, the last XMP APP1 segment's first
    ``tiff:Orientation="N"`` or ``<tiff:Orientation>N`` does. Only 2-8 rotate or flip.

    Known differences (no camera or editor writes these): an orientation stored as a rational or
    a float (Pillow compares 6/1 and 6.0 equal to 6; here they count as 1), and an IFD0 that runs
    past its APP1 segment into a second Exif segment (Pillow joins the segments).
    """
    import tensorflow as tf

    raw = tf.io.decode_raw(data, tf.uint8)
    size = tf.size(raw)

    def byte(index: Any) -> Any:
        inside = (index >= 0) & (index < size)
        return tf.where(
            inside, tf.cast(tf.gather(raw, tf.clip_by_value(index, 0, size - 1)), tf.int32), 0
        )

    def u16(index: Any, little: Any) -> Any:
        first, second = byte(index), byte(index + 1)
        return tf.where(little, first + 256 * second, 256 * first + second)

    def u32(index: Any, little: Any) -> Any:
        low, high = u16(index, little), u16(index + 2, little)
        return tf.where(little, low + 65536 * high, 65536 * low + high)

    big = tf.constant(False)
    exif_id = tf.constant([0x45, 0x78, 0x69, 0x66, 0, 0])  # b"Exif\0\0"
    xmp_id = tf.constant(list(_XMP_ID))

    def starts_with(position: Any, expected: Any, length: Any) -> Any:
        count = tf.size(expected)
        return (length >= count) & tf.reduce_all(
            tf.equal(byte(position + tf.range(count)), expected)
        )

    def more(position: Any, *_: Any) -> Any:
        return position + 1 < size

    def step(
        position: Any, tiff: Any, tiff_end: Any, xmp_start: Any, xmp_length: Any
    ) -> tuple[Any, Any, Any, Any, Any]:
        marker = byte(position + 1)
        is_ff = tf.equal(byte(position), 0xFF)
        no_length = (
            ((marker >= 0xD0) & (marker <= 0xD9))
            | ((marker >= 0xF0) & (marker <= 0xFD))
            | tf.equal(marker, 0xC8)
            | tf.equal(marker, 0x00)
        )
        fill = tf.equal(marker, 0xFF)
        length = u16(position + 2, big)
        body, body_length = position + 4, length - 2
        segment = is_ff & ~no_length & ~fill
        app1 = segment & tf.equal(marker, 0xE1)
        is_exif = app1 & (tiff < 0) & starts_with(body, exif_id, body_length)
        is_xmp = app1 & starts_with(body, xmp_id, body_length)
        tiff = tf.where(is_exif, body + 6, tiff)
        tiff_end = tf.where(is_exif, body + body_length, tiff_end)
        xmp_start = tf.where(is_xmp, body + len(_XMP_ID), xmp_start)
        xmp_length = tf.where(is_xmp, body_length - len(_XMP_ID), xmp_length)
        after = tf.where(
            ~is_ff | fill,
            position + 1,
            tf.where(no_length, position + 2, position + 2 + tf.maximum(length, 2)),
        )
        sos = is_ff & tf.equal(marker, 0xDA)
        return tf.where(sos, size, after), tiff, tiff_end, xmp_start, xmp_length

    start = tf.constant(2)
    _, tiff, tiff_end, xmp_start, xmp_length = tf.while_loop(
        more, step, (start, tf.constant(-1), tf.constant(0), tf.constant(-1), tf.constant(0))
    )
    order = u16(tiff, big)
    little = tf.equal(order, 0x4949)
    valid = (tiff > 0) & (little | tf.equal(order, 0x4D4D))
    directory = tiff + u32(tiff + 4, little)
    count = tf.where(valid, u16(directory, little), 0)
    index = tf.range(count)
    entries = directory + 2 + 12 * index
    kinds = u16(entries + 2, little)
    is_tag = (
        tf.equal(u16(entries, little), _ORIENTATION_TAG)
        & (entries + 12 <= tf.minimum(tiff_end, size))
        & tf.reduce_any(tf.equal(kinds[:, None], _TIFF_TYPES), axis=1)  # Pillow skips others
    )
    present = tf.reduce_any(is_tag)
    last = directory + 2 + 12 * tf.maximum(tf.reduce_max(tf.where(is_tag, index, -1)), 0)
    kind, values = u16(last + 2, little), u32(last + 4, little)
    value = tf.where(
        tf.equal(kind, 1),
        byte(last + 8),
        tf.where(
            tf.equal(kind, 3) | tf.equal(kind, 8), u16(last + 8, little), u32(last + 8, little)
        ),
    )
    exif_value = tf.where(
        tf.equal(values, 1) & tf.reduce_any(tf.equal(kind, [1, 3, 4, 8, 9])), value, 1
    )
    xmp = tf.strings.substr(data, tf.maximum(xmp_start, 0), tf.maximum(xmp_length, 0))
    xmp_found = (xmp_start >= 0) & tf.strings.regex_full_match(xmp, _XMP_ORIENTATION_FULL)
    digit = tf.where(xmp_found, tf.strings.regex_replace(xmp, _XMP_ORIENTATION_FULL, r"\2"), "1")
    xmp_value = tf.strings.to_number(digit, tf.int32)
    chosen = tf.where(present, exif_value, xmp_value)
    return tf.where((chosen >= 1) & (chosen <= 8), chosen, 1)
