"""KFP wrapper: ``promote`` (the champion gate)."""

from catsdogs.components.common.config import image
from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model

IMAGE = image()


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def promote(
    model: Input[Model],
    evaluation: Input[Artifact],
    data: Input[Dataset],
    champion_uri: str,
    margin: float = 0.0,
) -> bool:
    """Make the model the champion at champion_uri if it beats the current one by margin.

    Args:
        model: Folder with model.keras.
        evaluation: Output folder of evaluate for this model (evaluation.json).
        data: The prepared dataset whose test split both models are compared on.
        champion_uri: Champion location (local folder or gs:// prefix).
        margin: How much higher the new accuracy must be than the champion's.
    """
    from catsdogs.components.common import quiet
    from catsdogs.components.promote import core

    quiet.install()
    settings = core.PromoteSettings(margin=margin)
    return core.promote(model.path, evaluation.path, data.path, champion_uri, settings).promoted
