"""KFP wrapper: render what the network sees as one self-contained HTML page."""

from catsdogs.components.common.config import image
from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Model, Output

IMAGE = image()


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def render_activations(
    model: Input[Model],
    data: Input[Dataset],
    report: Output[HTML],
    layer: str = "",
    channels: str = "",
) -> None:
    """Activation grids, enlarged channels, Grad-CAM and training curves for a few test images.

    Args:
        model: Folder with model.keras (and history.json).
        data: Prepared dataset; a few of its test images are rendered.
        report: The HTML page, every picture embedded.
        layer: Layer whose channels are enlarged ("" = the first convolution).
        channels: Comma-separated channels to enlarge ("" = 4,7).
    """
    import tempfile

    from catsdogs.components.render_activations import core

    settings = core.RenderConfig(layer=layer, channels=core.parse_channels(channels))
    with tempfile.TemporaryDirectory(prefix="render-") as tmp:
        core.render(model.path, tmp, data_uri=data.path, config=settings, report_path=report.path)
