"""Print pyproject.toml's pinned requirements: the dependencies plus the named extras, one a line.

``images/Dockerfile`` installs these in their own layer before it copies the source, so a code change
rebuilds in seconds; the package itself is then installed from the source with ``--no-deps`` and
``pip check`` confirms that the two agree. The pins exist only in pyproject.toml.

Usage: ``python requirements.py PYPROJECT [EXTRA ...]`` (empty EXTRA arguments are ignored).
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    """The project's dependencies followed by those of each extra named.

    Raises:
        ValueError: An extra that pyproject.toml does not define.
    """
    project = tomllib.loads(pyproject.read_text())["project"]
    optional = project.get("optional-dependencies", {})
    lines = list(project["dependencies"])
    for extra in filter(None, extras):
        if extra not in optional:
            raise ValueError(
                f"Unknown extra {extra!r}; expected one of {sorted(optional)} from {pyproject}."
            )
        lines += optional[extra]
    return lines


def main(argv: list[str]) -> int:
    """Print the requirements for ``argv = [PYPROJECT, EXTRA...]``."""
    if not argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        print("\n".join(requirements(Path(argv[0]), argv[1:])))
    except ValueError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
