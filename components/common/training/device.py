"""Where training runs: the ``require_gpu`` check, seeds, the dtype policy and the replicas.

Every GPU the process sees is used: with more than one (``--accelerator-count N`` gives the pod N),
``setup_device`` makes a ``tf.distribute.MirroredStrategy`` over all of them, and ``run_training``
builds the datasets, models and checkpoints inside its scope. ``batch_size`` is per replica: the
global batch is ``batch_size x replicas`` (``global_batch_size``), so each GPU gets the seed's 32
images a step. The learning rate is not scaled: RMSprop and Adam normalise the gradient's size,
an averaged gradient over a bigger batch has the same expected size, and an unchanged learning
rate lets a run resume on another number of GPUs with the same optimizer; with N replicas an
epoch takes N times fewer steps, so set ``--learning-rate`` (e.g. x sqrt(N)) or ``--epochs``
yourself when you want to trade that back. Without a GPU the logical CPU devices count the same
way (one, unless configured otherwise, as the tests do with two).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Any

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
    policy: str = "float32"
    strategy: Any = field(repr=False, default=None)  # tf.distribute strategy of the run

    @property
    def replicas(self) -> int:
        """How many devices train in sync (1 without a MirroredStrategy)."""
        return int(self.strategy.num_replicas_in_sync) if self.strategy is not None else 1

    def describe(self) -> str:
        """One line for logs and metrics, e.g. ``2 GPU, mixed_float16, 2 replicas``."""
        where = f"{self.gpus} GPU" if self.gpus else f"CPU ({platform.machine()})"
        replicas = f", {self.replicas} replicas" if self.replicas > 1 else ""
        return f"{where}, {self.policy}{replicas}"


def replica_devices() -> list[str]:
    """The devices to train on: every logical GPU, else every logical CPU device."""
    import tensorflow as tf

    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    return [device.name for device in devices]


def make_strategy() -> Any:
    """A MirroredStrategy over ``replica_devices()`` when there are several, else TF's default."""
    import tensorflow as tf

    devices = replica_devices()
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def global_batch_size(per_replica: int) -> int:
    """``per_replica`` x the replicas of the strategy in scope (1 outside any)."""
    import tensorflow as tf

    return per_replica * int(tf.distribute.get_strategy().num_replicas_in_sync)


def setup_device(settings: TrainingSettings) -> DeviceInfo:
    """Check ``require_gpu``, seed Python/NumPy/TF, set the Keras dtype policy, pick the replicas.

    Call before building the model (the policy applies to layers created afterwards), build it
    inside ``info.strategy.scope()``, and call ``restore_device`` when done.
    """
    import keras
    import tensorflow as tf

    require_gpu_or_fail(settings.require_gpu)
    gpus = len(tf.config.list_physical_devices("GPU"))
    mode = settings.mixed_precision
    mixed = mode in ("on", "bf16") or (mode == "auto" and gpus > 0)
    # bf16 (mixed_bfloat16) is for CPUs with native bfloat16 (AVX-512 BF16, AMX): about 2x an fp32
    # epoch of the seed's convnet on this project's 2-core machine. It is not a default: its
    # accuracy over a full 100-epoch run is not yet measured (see the README's speed figures).
    policy = "mixed_bfloat16" if mode == "bf16" else "mixed_float16" if mixed else "float32"
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(settings.seed)
    return DeviceInfo(gpus, mixed, previous, policy, make_strategy())


def restore_device(info: DeviceInfo) -> None:
    """Put back the Keras dtype policy that was in force before ``setup_device``."""
    import keras

    keras.mixed_precision.set_global_policy(info.previous_policy)
