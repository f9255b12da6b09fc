"""The ``catsdogs`` command line: one command per component, plus run/compile/submit/schedule/predict.

Heavy imports (tensorflow, keras, kfp, google-cloud-storage) happen inside the commands, so
``catsdogs --help`` stays fast. Errors a user can fix end in one line on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import NoReturn

import typer

app = typer.Typer(
    name="catsdogs",
    help="Dogs-vs-Cats on Kubeflow: prepare data, train, evaluate, render, and run the pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str) -> NoReturn:
    """Print a one-line error and exit with status 2."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code=2)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix (bad values, missing inputs, storage problems) into one line."""
    from catsdogs.components.common.storage import StorageError

    try:
        yield
    except (ValueError, FileNotFoundError, FileExistsError, StorageError) as error:
        fail(str(error).splitlines()[0] if str(error) else repr(error))


# ------------------------------------------------------------------------------- prepare
# (prepare_dataset section)


# ------------------------------------------------------------------------------- training
# (train_scratch and train_transfer section)


# ------------------------------------------------------------------------------- evaluation
# (evaluate, promote, render, predict section)


# ------------------------------------------------------------------------------- pipeline
# (run, compile, submit, schedule section)


def main() -> None:
    """Entry point for ``python -m catsdogs.components.cli``."""
    app()


if __name__ == "__main__":
    sys.exit(main())
