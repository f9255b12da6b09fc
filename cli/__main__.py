"""``python -m catsdogs.cli``: the same as the ``catsdogs`` script."""

from catsdogs.cli.app import main

main()
