"""KFP wrapper of train_scratch: a convnet (the seed's by default) trained from scratch."""

from catsdogs.components.common.config import image
from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

IMAGE = image()


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_scratch(
    data: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    curves: Output[HTML],
    architecture: str = "seed",
    epochs: int = 100,
    steps_per_epoch: int = 0,
    augmentation: str = "seed",
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    seed: int = 1337,
    checkpoint_dir: str = "",
    require_gpu: bool = False,
) -> float:
    """Train a convnet from scratch on a prepared dataset; returns the best validation accuracy.

    Args:
        data: Output of prepare_dataset.
        model: MODEL_DIR: model.keras, history.json, metrics.json, curves.png, run.json.
        metrics: Final and best validation figures, epochs run, training time.
        curves: Training vs validation accuracy and loss, as an HTML page.
        architecture: seed (the seed's convnet) or xception-mini (residual, batch norm).
        epochs: Passes over the training split (or of steps_per_epoch batches).
        steps_per_epoch: Training batches per epoch (the book: 100); 0: one pass.
        augmentation: seed (the seed's ImageDataGenerator) or strong (shear up to 11.5 degrees).
        batch_size: Images per step.
        learning_rate: RMSprop learning rate.
        seed: Seed for weights, shuffling and augmentation.
        checkpoint_dir: Stable checkpoint location (local or gs://) so a retry resumes;
            empty: inside the model folder.
        require_gpu: Fail at once without a GPU.
    """
    from catsdogs.components.common import quiet
    from catsdogs.components.common.training.run import log_kfp_outputs
    from catsdogs.components.train_scratch import core

    quiet.install()
    settings = core.ScratchSettings(
        architecture=architecture,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,
        augmentation=augmentation,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        checkpoint_dir=checkpoint_dir,
        require_gpu=require_gpu,
    )
    result = core.train_scratch(data.path, model.path, settings)
    log_kfp_outputs(result, metrics, curves.path)
    return float(result.metrics["best_val_accuracy"])
