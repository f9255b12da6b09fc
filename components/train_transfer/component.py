"""KFP wrapper of train_transfer: an ImageNet backbone (VGG16 by default) with a new head."""

from catsdogs.components.common.config import image
from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

IMAGE = image()


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_transfer(
    data: Input[Dataset],
    model: Output[Model],
    features: Output[Dataset],
    metrics: Output[Metrics],
    curves: Output[HTML],
    backbone: str = "vgg16",
    weights: str = "imagenet",
    mode: str = "features",
    epochs: int = 30,
    batch_size: int = 32,
    seed: int = 1337,
    checkpoint_dir: str = "",
    require_gpu: bool = False,
) -> float:
    """Train a transfer model on a prepared dataset; returns the best validation accuracy.

    Args:
        data: Output of prepare_dataset.
        model: MODEL_DIR: model.keras (takes raw RGB pixels), history.json, metrics.json,
            curves.png, run.json.
        features: The backbone's features of each split (features mode): <key>/<split>.npz and
            features.json.
        metrics: Final and best validation figures, epochs run, training time.
        curves: Training vs validation accuracy and loss, as an HTML page.
        backbone: vgg16, mobilenet_v2, resnet50 or another keras.applications model (snake case).
        weights: imagenet (baked into the image), or a path / gs:// URI of a notop .h5 file.
        mode: features, frozen or fine-tune.
        epochs: Epochs of the head (features) or of the frozen phase.
        batch_size: Images per step.
        seed: Seed for weights, shuffling and augmentation.
        checkpoint_dir: Stable location (local or gs://) for checkpoints and a features cache, so a
            retry resumes and a rerun with another head skips the backbone; empty: none kept.
        require_gpu: Fail at once without a GPU.
    """
    from catsdogs.components.common import quiet
    from catsdogs.components.common.training.run import log_kfp_outputs
    from catsdogs.components.train_transfer import core

    quiet.install()
    settings = core.TransferSettings(
        backbone=backbone,
        weights=weights,
        mode=mode,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        checkpoint_dir=checkpoint_dir,
        require_gpu=require_gpu,
    )
    result = core.train_transfer(data.path, model.path, settings, features=features.path)
    log_kfp_outputs(result, metrics, curves.path)
    return float(result.metrics["best_val_accuracy"])
