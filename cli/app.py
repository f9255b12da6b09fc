"""The ``catsdogs`` command line: the Typer app, its error handling and ``main``.

Each area's commands live in their own module (``data``, ``train``, ``evaluate``, ``serve``,
``pipeline``), each a Typer app of its own, merged here into the one ``catsdogs`` app. Heavy imports (tensorflow, keras, kfp, google-cloud-storage)
happen inside the commands, so ``catsdogs --help`` stays fast.

Errors a user can fix (:class:`~catsdogs.components.common.errors.CatsdogsError`) end in one line
on stderr and exit code 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

import typer
from catsdogs.cli import data, evaluate, pipeline, serve, train
from catsdogs.components.common import quiet
from catsdogs.components.common.errors import CatsdogsError
from typer.core import TyperGroup


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit with status 2."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code=2)


class _Commands(TyperGroup):
    """The root command group: a :class:`CatsdogsError` from any command becomes one line."""

    def invoke(self, ctx: Any) -> Any:
        """Run the chosen command; report a user error in one line, let bugs show a traceback."""
        try:
            return super().invoke(ctx)
        except CatsdogsError as error:
            lines = str(error).splitlines()
            fail(lines[0] if lines else repr(error))


app = typer.Typer(
    cls=_Commands,
    name="catsdogs",
    help="Dogs-vs-Cats on Kubeflow: prepare data, train, evaluate, render, and run the pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"catsdogs {version('catsdogs')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    """Dogs-vs-Cats on Kubeflow: prepare data, train, evaluate, render, and run the pipeline."""


for area in (data, train, evaluate, serve, pipeline):
    app.add_typer(area.app)
app.add_typer(pipeline.schedule_app, name="schedule")


def main() -> None:
    """Entry point of the ``catsdogs`` script and of ``python -m catsdogs.cli``.

    TensorFlow's start-up noise is filtered before any command can import it (see ``quiet``).
    """
    quiet.install()
    app()
