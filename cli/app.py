"""The ``catsdogs`` command line: the Typer app, its error handling and ``main``.

Each area's commands live in their own module (``data``, ``train``, ``evaluate``, ``serve``,
``pipeline``), each a Typer app of its own, merged here into the one ``catsdogs`` app. Heavy imports (tensorflow, keras, kfp, google-cloud-storage)
happen inside the commands, so ``catsdogs --help`` stays fast.

Errors a user can fix end in one line on stderr and exit code 2: a
:class:`~catsdogs.components.common.errors.CatsdogsError`, a file-system error the user caused
(read-only or full disk, permissions, a file where a folder belongs: ``errors.describe_os_error``)
and an option given an empty value where it needs one (``--output ""`` would mean the current
folder). Any other exception is a bug and keeps its traceback. Every line printed for an error,
tracebacks included, goes through ``redaction.redact`` (credentials in URLs, tokens).
"""

from __future__ import annotations

import sys
import traceback
from typing import Annotated, Any, NoReturn

import typer
from catsdogs.cli import data, evaluate, package, pipeline, runs, serve, train
from catsdogs.components.common import quiet
from catsdogs.components.common.errors import CatsdogsError, SettingsError, describe_os_error
from catsdogs.components.common.redaction import redact
from typer.core import TyperCommand, TyperGroup


def fail(message: str) -> NoReturn:
    """Print a one-line error (credentials masked) and exit with status 2."""
    lines = message.splitlines()
    typer.echo(f"Error: {redact(lines[0] if lines else message)}", err=True)
    raise typer.Exit(code=2)


class _Commands(TyperGroup):
    """The root command group: a user error from any command becomes one line."""

    def invoke(self, ctx: Any) -> Any:
        """Run the chosen command; report a user error in one line, let bugs show a traceback."""
        try:
            return super().invoke(ctx)
        except CatsdogsError as error:
            fail(str(error) or repr(error))
        except Exception as error:
            message = describe_os_error(error)
            if message is None:
                raise
            fail(message)


class _Command(TyperCommand):
    """A command that refuses an empty value for an option that needs one.

    An option that is required, repeatable (``--image``), or whose default is not empty, given
    ``""`` (or blanks) is an error naming the option and what it takes; options whose default is
    empty (``--champion`` of evaluate: "no gate") keep meaning "off" when given empty.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Check the raw values for blanks, then parse as usual."""
        try:
            raw, _, _ = self.make_parser(ctx).parse_args(args=list(args))
        except Exception:  # a usage error: the usual parse below reports it
            raw = {}
        for param in self.params:
            value = raw.get(param.name or "")
            values = value if isinstance(value, (list, tuple)) else [value]
            blank = [item for item in values if isinstance(item, str) and not item.strip()]
            default = param.default
            several = bool(getattr(param, "multiple", False)) or param.nargs != 1
            if blank and (
                several
                or param.required
                or (default not in (None, (), []) and str(default).strip())
            ):
                name = (
                    param.opts[0]
                    if param.param_type_name == "option"
                    else (getattr(param, "metavar", None) or str(param.name).upper()).rstrip(".")
                )
                what = getattr(param, "help", None) or "a value"
                raise SettingsError(
                    f"{name} is empty ({blank[0]!r}); it needs a value: {what.rstrip('.')}. "
                    "(An empty path would mean the current folder.)"
                )
        return super().parse_args(ctx, args)


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


for area in (data, train, evaluate, serve, package, pipeline):
    app.add_typer(area.app)
app.add_typer(pipeline.schedule_app, name="schedule")
app.add_typer(runs.app, name="runs")
for _typer in (
    data.app,
    train.app,
    evaluate.app,
    serve.app,
    package.app,
    pipeline.app,
    pipeline.schedule_app,
    runs.app,
):
    for _info in _typer.registered_commands:
        if _info.cls in (None, TyperCommand):
            _info.cls = _Command


def main() -> None:
    """Entry point of the ``catsdogs`` script and of ``python -m catsdogs.cli``.

    TensorFlow's start-up noise is filtered before any command can import it (see ``quiet``).
    """
    quiet.install()
    try:
        app()
    except Exception:  # a bug: its traceback, with credentials masked (a URL may be in it)
        sys.stderr.write(redact("".join(traceback.format_exc())))
        sys.exit(1)
