"""Where training runs: the ``require_gpu`` check, seeds and the mixed-precision policy."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field

from catsdogs.components.common.errors import GpuRequiredError
from catsdogs.components.common.training.settings import TrainingSettings


def gpu_available() -> bool:
    """Whether TensorFlow sees at least one GPU."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def require_gpu_or_fail(required: bool) -> None:
    """Raise GpuRequiredError when ``required`` and TensorFlow sees no GPU."""
    if required and not gpu_available():
        raise GpuRequiredError(
            "require_gpu is set but TensorFlow sees no GPU on this machine. Run on a GPU node "
            "(check the node's nvidia driver and the CUDA libraries of the image), or drop "
            "--require-gpu / set require_gpu=False to train on the CPU."
        )


@dataclass(frozen=True)
class DeviceInfo:
    """What ``setup_device`` found and chose."""

    gpus: int
    mixed_precision: bool
    previous_policy: str = field(repr=False, default="float32")

    def describe(self) -> str:
        """One line for logs and metrics, e.g. ``1 GPU, mixed_float16``."""
        where = f"{self.gpus} GPU" if self.gpus else f"CPU ({platform.machine()})"
        return f"{where}, {'mixed_float16' if self.mixed_precision else 'float32'}"


def setup_device(settings: TrainingSettings) -> DeviceInfo:
    """Check ``require_gpu``, seed Python/NumPy/TF and set the Keras dtype policy.

    Call before building the model (the policy applies to layers created afterwards) and call
    ``restore_device`` when done.
    """
    import keras
    import tensorflow as tf

    require_gpu_or_fail(settings.require_gpu)
    gpus = len(tf.config.list_physical_devices("GPU"))
    mixed = settings.mixed_precision == "on" or (settings.mixed_precision == "auto" and gpus > 0)
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    keras.utils.set_random_seed(settings.seed)
    return DeviceInfo(gpus=gpus, mixed_precision=mixed, previous_policy=previous)


def restore_device(info: DeviceInfo) -> None:
    """Put back the Keras dtype policy that was in force before ``setup_device``."""
    import keras

    keras.mixed_precision.set_global_policy(info.previous_policy)
