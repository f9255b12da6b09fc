"""KFP wrapper: what the network sees, as an HTML page within the UI's budget and a picture folder."""

from catsdogs.components.common.config import image
from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Model, Output

IMAGE = image()


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def render_activations(
    model: Input[Model],
    data: Input[Dataset],
    report: Output[HTML],
    pictures: Output[Artifact],
    layer: str = "",
    channels: str = "",
) -> None:
    """Activation grids, enlarged channels, Grad-CAM and training curves for a few test images.

    Args:
        model: Folder with model.keras (and history.json).
        data: Prepared dataset; a few of its test images are rendered.
        report: The HTML page, every picture embedded as a JPEG copy, under 3 MB in all (the
            KFP UI loads the whole page into an iframe).
        pictures: Folder of the full-resolution PNGs (every layer grid, channels, Grad-CAM).
        layer: Layer whose channels are enlarged ("" = the first convolution).
        channels: Comma-separated channels to enlarge ("" = 4,7).
    """
    from catsdogs.components.common import quiet
    from catsdogs.components.render_activations import core

    quiet.install()
    settings = core.RenderSettings(layer=layer, channels=core.parse_channels(channels))
    core.render(
        model.path, pictures.path, data_uri=data.path, config=settings, report_path=report.path
    )
