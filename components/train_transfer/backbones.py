"""ImageNet backbones from ``keras.applications``: registry, weights, preprocessing, unfreezing.

A backbone is named in snake case (``vgg16``, ``mobilenet_v2``, ``resnet50``, ``efficientnet_b0``...).
Three have tuned defaults (``KNOWN``); any other ``keras.applications`` model works by a generic rule:
224-pixel input, global average pooling, and ``unfreeze_from`` must be given for fine-tuning.

Each model carries its own ``preprocess_input`` as a frozen 1x1 convolution named
``<backbone>_preprocess``: every ``keras.applications`` preprocessing is a per-pixel affine map of
RGB values (caffe: RGB->BGR and mean subtraction; tf: x/127.5-1; torch: x/255 then mean/std), so
it is measured once from the real function and baked into a built-in layer. The saved model then
needs no custom code to load and takes raw RGB pixels in [0, 255].
"""

from __future__ import annotations

import hashlib
import importlib
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catsdogs.components.common import config, storage
from catsdogs.components.common.errors import SettingsError
from catsdogs.components.common.records import sha256_file

IMAGENET = "imagenet"
RANDOM = "none"  # random initialisation: structure tests and smoke runs only
DOWNLOAD_TIMEOUT_S = 30.0  # per socket operation, so an unreachable host fails instead of hanging
POOLINGS = ("flatten", "avg")


class WeightsError(SettingsError):
    """Backbone weights that cannot be obtained or do not fit the backbone."""


@dataclass(frozen=True)
class BackboneSpec:
    """How one backbone is built and fine-tuned.

    Attributes:
        name: Snake-case name (``vgg16``); also the name of the nested backbone model.
        constructor: The ``keras.applications`` function name (``VGG16``).
        image_size: Default square input size in pixels.
        pooling: ``flatten`` (keep the spatial map, as the book does for VGG16) or ``avg``.
        unfreeze_from: Prefix of the first backbone layer that fine-tuning unfreezes; every layer
            from there to the end is unfrozen (batch norm layers excepted). Empty: not known.
        weights_file: The Keras notop weights file name (to suggest in error messages).
    """

    name: str
    constructor: str
    image_size: int = 224
    pooling: str = "avg"
    unfreeze_from: str = ""
    weights_file: str = ""


KNOWN: dict[str, BackboneSpec] = {
    "vgg16": BackboneSpec(
        "vgg16",
        "VGG16",
        150,
        "flatten",
        "block5",
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
    # The ImageNet MobileNetV2 notop file at 224 px (the one Keras downloads for 224 inputs).
    "mobilenet_v2": BackboneSpec(
        "mobilenet_v2",
        "MobileNetV2",
        224,
        "avg",
        "block_16",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
    ),
    "resnet50": BackboneSpec(
        "resnet50",
        "ResNet50",
        224,
        "avg",
        "conv5_block3",
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    ),
}


def _squash(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def application_names() -> list[str]:
    """Every model constructor ``keras.applications`` offers (``VGG16``, ``MobileNetV2``...)."""
    import keras

    return sorted(n for n in dir(keras.applications) if n[:1].isupper())


def backbone_spec(name: str) -> BackboneSpec:
    """The spec of a backbone by snake-case name, with a clear error for an unknown one."""
    if name in KNOWN:
        return KNOWN[name]
    matches = [n for n in application_names() if _squash(n) == _squash(name)]
    if not matches:
        raise SettingsError(
            f"Unknown backbone {name!r}: expected one of {sorted(KNOWN)} or another "
            "keras.applications model in snake case (e.g. efficientnet_b0, densenet121, xception)."
        )
    return BackboneSpec(name, matches[0])


def _constructor(spec: BackboneSpec) -> Any:
    import keras

    return getattr(keras.applications, spec.constructor)


def affine_preprocessing(spec: BackboneSpec) -> tuple[Any, Any]:
    """Measure the backbone's ``preprocess_input`` as ``y = x @ matrix + bias`` per RGB pixel.

    Returns:
        ``(matrix [3, 3], bias [3])`` as float32 numpy arrays.

    Raises:
        ValueError: if the function is not a per-pixel affine map (none in keras.applications is).
    """
    import numpy as np

    module = importlib.import_module(_constructor(spec).__module__)
    probe = np.array([[[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype="float32")
    out = np.asarray(module.preprocess_input(probe[None].copy()), dtype="float64")[0, 0]
    bias = out[0]
    matrix = (out[1:] - bias) / 255.0  # row j: the effect of input channel j
    check = np.random.default_rng(0).uniform(0, 255, (1, 8, 8, 3)).astype("float32")
    expected = np.asarray(module.preprocess_input(check.copy()), dtype="float64")
    if not np.allclose(check.astype("float64") @ matrix + bias, expected, atol=1e-3):
        raise ValueError(f"preprocess_input of {spec.constructor} is not a per-pixel affine map.")
    return matrix.astype("float32"), bias.astype("float32")


def preprocess_layer(spec: BackboneSpec) -> Any:
    """A frozen 1x1 convolution equal to the backbone's ``preprocess_input``; None if identity."""
    import keras
    import numpy as np

    matrix, bias = affine_preprocessing(spec)
    if np.allclose(matrix, np.eye(3)) and np.allclose(bias, 0):
        return None  # e.g. EfficientNet, ConvNeXt: the model rescales inside
    # float32 even under mixed precision: pixel values and ImageNet means need the precision.
    layer = keras.layers.Conv2D(
        3, 1, trainable=False, dtype="float32", name=f"{spec.name}_preprocess"
    )
    layer.build((None, None, None, 3))
    layer.set_weights([matrix.reshape(1, 1, 3, 3), bias])
    return layer


# ------------------------------------------------------------------------------- weights


def fetch_weights(weights: str, spec: BackboneSpec) -> tuple[str, str]:
    """Resolve a ``weights`` setting to what Keras takes, plus a fingerprint of the values.

    Args:
        weights: ``imagenet``, ``none`` (random), or a local path / gs:// URI of a notop ``.h5``.
        spec: The backbone.

    Returns:
        ``(keras_weights, fingerprint)``: ``keras_weights`` is ``imagenet``, ``none`` or a local file
        path (gs:// files are downloaded once into the cache, keyed by URI and generation).
    """
    if weights == IMAGENET:
        baked = config.weights_dir()
        if baked and spec.weights_file and (baked / spec.weights_file).is_file():
            path = baked / spec.weights_file  # baked into the image at build time
            return str(path), f"sha256:{sha256_file(path)}"
    if weights in (IMAGENET, RANDOM):
        return weights, f"{weights}:{spec.constructor}"
    hint = f"a notop weights file for {spec.constructor}" + (
        f" (e.g. {spec.weights_file})" if spec.weights_file else ""
    )
    if not weights.endswith(".h5"):
        raise WeightsError(
            f"--weights {weights!r}: expected 'imagenet', 'none' or a path / gs:// or s3:// URI to {hint} "
            "ending in .h5."
        )
    if storage.is_remote(weights):
        info = storage.stat(weights)  # fails with a clear StorageError when missing
        key = hashlib.sha256(f"{weights}#{info.generation}".encode()).hexdigest()[:16]
        local = config.cache_dir() / "weights" / key / Path(weights).name
        if not local.is_file():
            storage.download_file(weights, local)
        path = local
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"--weights {weights}: no such file. Pass {hint}.")
    return str(path), f"sha256:{sha256_file(path)}"


def build_backbone(spec: BackboneSpec, weights: str, image_size: int) -> Any:
    """Build the notop backbone (a nested Keras model named ``spec.name``) with its weights.

    Args:
        spec: The backbone.
        weights: ``imagenet``, ``none`` or a local ``.h5`` path (see ``fetch_weights``).
        image_size: Square input size in pixels.

    Raises:
        WeightsError: ImageNet weights cannot be downloaded (offline), or the file does not fit.
    """
    constructor = _constructor(spec)
    kwargs: dict[str, Any] = {
        "include_top": False,
        "weights": None if weights == RANDOM else weights,
        "input_shape": (image_size, image_size, 3),
    }
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        model = constructor(**kwargs)
    except Exception as error:  # keras raises a bare Exception for download failures
        text = str(error).splitlines()[0] if str(error) else repr(error)
        if weights == IMAGENET and ("URL fetch failure" in text or isinstance(error, OSError)):
            raise WeightsError(
                f"Could not download the ImageNet weights of {spec.constructor} ({text}). This "
                "machine looks offline: pass --weights with a local path or gs:// URI to a notop "
                f"weights file{' such as ' + spec.weights_file if spec.weights_file else ''}."
            ) from error
        if weights not in (IMAGENET, RANDOM):
            raise WeightsError(
                f"--weights {weights} does not fit a notop {spec.constructor} ({text}). Pass the "
                f"notop weights file of {spec.constructor}"
                + (f" ({spec.weights_file})." if spec.weights_file else ".")
            ) from error
        raise
    finally:
        socket.setdefaulttimeout(previous)
    model.name = spec.name  # stable name: MobileNetV2 would be "mobilenetv2_1.00_224"
    return model


def unfreeze_index(backbone: Any, spec: BackboneSpec, unfreeze_from: str) -> int:
    """Index of the first backbone layer that fine-tuning unfreezes.

    Raises:
        SettingsError: no prefix is known for the backbone, or no layer name starts with it.
    """
    prefix = unfreeze_from or spec.unfreeze_from
    if not prefix:
        raise SettingsError(
            f"Fine-tuning {spec.name} needs --unfreeze-from: the name prefix of the first layer to "
            "unfreeze (the start of its last block)."
        )
    for index, layer in enumerate(backbone.layers):
        if layer.name.startswith(prefix):
            return index
    names = [layer.name for layer in backbone.layers]
    raise SettingsError(
        f"--unfreeze-from {prefix!r}: no layer of {spec.name} starts with it (last layers: "
        f"{', '.join(names[-6:])})."
    )


def set_trainable(backbone: Any, first_unfrozen: int | None) -> None:
    """Freeze the whole backbone (None) or unfreeze it from layer ``first_unfrozen`` on.

    Batch normalization layers stay frozen (and the backbone is always called with
    ``training=False``), so their statistics stay those of ImageNet.
    """
    import keras

    if first_unfrozen is None:
        backbone.trainable = False
        return
    backbone.trainable = True
    for index, layer in enumerate(backbone.layers):
        layer.trainable = index >= first_unfrozen and not isinstance(
            layer, keras.layers.BatchNormalization
        )
