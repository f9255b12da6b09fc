"""Every command the README and docs/ show exists and takes the options shown.

The commands are read from the Markdown itself: fenced code blocks (one logical line at a time,
backslash continuations joined) and inline code spans. A ``catsdogs ...`` command is resolved
against the Typer app (``typer.main.get_command``: the Click-style command tree Typer builds, its own vendored
Click since Typer 0.20), a
subcommand at a time, and each ``--option`` shown must be one that command takes. A ``make ...``
command must name targets of the Makefile, and each ``VAR=`` shown must be a variable the Makefile
uses. A renamed option or target fails here with the file, the line and the name.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^```")
_INLINE = re.compile(r"`([^`\n]+)`")
# A command starts a line or follows a shell separator; `.venv/bin/catsdogs` counts too.
_START = re.compile(r"(?:^|[;&|(]\s*|\$\s+|bin/)(catsdogs|make)\s+(?=\S)")
_PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")  # COMMAND, ID: a word the reader replaces


@dataclasses.dataclass(frozen=True)
class Shown:
    """One command shown in a document."""

    path: str
    line: int
    program: str  # "catsdogs" or "make"
    words: tuple[str, ...]


def _words(text: str) -> list[str]:
    text = text.split(" #", 1)[0]
    try:
        words = shlex.split(text, comments=False)
    except ValueError:  # an apostrophe in prose, an unclosed quote in a shortened example
        words = text.split()
    words = [w.strip("[]()") for w in words]
    for stop in ("&&", "|", ";", "||"):
        if stop in words:
            words = words[: words.index(stop)]
    return [w for w in words if w]


def _commands_in(text: str, path: str, line: int) -> list[Shown]:
    found = []
    for match in _START.finditer(text):
        words = _words(text[match.end() :])
        found.append(Shown(path, line, match.group(1), tuple(words)))
    return found


def shown_commands(markdown: str, path: str = "<snippet>") -> list[Shown]:
    """Every ``catsdogs ...`` and ``make ...`` command in ``markdown``."""
    found: list[Shown] = []
    in_code = False
    pending, pending_line = "", 0
    for number, line in enumerate(markdown.splitlines(), start=1):
        if _FENCE.match(line.strip()):
            in_code = not in_code
            continue
        if in_code:
            stripped = line.strip()
            if not pending:
                pending_line = number
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            found += _commands_in(pending + stripped, path, pending_line)
            pending = ""
        else:
            for span in _INLINE.findall(line):
                found += _commands_in(span.strip(), path, number)
    return found


def _is_group(command: Any) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def _option_names(command: Any) -> set[str]:
    names = {"--help"}
    for param in command.params:
        names.update(param.opts)
        names.update(param.secondary_opts)
    return names


def check_catsdogs(shown: Shown, root: Any) -> list[str]:
    """What is wrong with one ``catsdogs`` command (empty: nothing)."""
    where = f"{shown.path}:{shown.line}: catsdogs {' '.join(shown.words)}"
    command, words, name = root, list(shown.words), "catsdogs"
    while _is_group(command) and words and not words[0].startswith("-"):
        word = words.pop(0)
        if _PLACEHOLDER.match(word) or word in ("...", "…"):
            return []  # `catsdogs COMMAND --help`: any command
        sub = command.commands.get(word)
        if sub is None:
            return [f"{where}: {name} has no command {word!r} (it has {sorted(command.commands)})"]
        command, name = sub, f"{name} {word}"
    known = _option_names(command)
    problems = []
    for word in words:
        if word.startswith("--") and len(word) > 2:
            option = word.split("=", 1)[0]
            if "*" in option and fnmatch.filter(known, option):
                continue  # `--serving-*`: a family of options, at least one of which exists
            if option not in known:
                problems.append(f"{where}: {name} has no option {option} (it has {sorted(known)})")
    return problems


def makefile_names(makefile: str) -> tuple[set[str], set[str]]:
    """The Makefile's targets and every word that could name one of its variables."""
    targets = set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", makefile, flags=re.MULTILINE))
    variables = set(re.findall(r"\b[A-Z][A-Z0-9_]*\b", makefile))
    return targets, variables


def check_make(shown: Shown, makefile: str) -> list[str]:
    """What is wrong with one ``make`` command (empty: nothing)."""
    where = f"{shown.path}:{shown.line}: make {' '.join(shown.words)}"
    targets, variables = makefile_names(makefile)
    problems = []
    for word in shown.words:
        if word.startswith("-") or word in ("...", "…"):
            continue
        if "=" in word:
            variable = word.split("=", 1)[0]
            if re.fullmatch(r"[A-Z][A-Z0-9_]*", variable) and variable not in variables:
                problems.append(f"{where}: the Makefile uses no variable {variable}")
        elif re.fullmatch(r"[a-z][a-z0-9_-]*", word) and word not in targets:
            problems.append(f"{where}: the Makefile has no target {word!r}")
        elif not re.fullmatch(r"[a-z][a-z0-9_-]*", word):
            break  # prose after the command (`make help` lists ...)
    return problems


def check(shown: list[Shown], root: Any, makefile: str) -> list[str]:
    """Every problem of ``shown`` against the CLI ``root`` and the ``makefile`` text."""
    problems: list[str] = []
    for command in shown:
        if command.program == "catsdogs":
            problems += check_catsdogs(command, root)
        else:
            problems += check_make(command, makefile)
    return problems


@pytest.fixture(scope="module")
def cli_root() -> Any:
    from catsdogs.cli.app import app

    return typer.main.get_command(app)


@pytest.fixture(scope="module")
def makefile() -> str:
    return (ROOT / "Makefile").read_text()


@pytest.fixture(scope="module")
def all_shown() -> list[Shown]:
    shown = []
    for path in DOCS:
        shown += shown_commands(path.read_text(), str(path.relative_to(ROOT)))
    return shown


def test_every_shown_command_exists_with_its_options(all_shown, cli_root, makefile) -> None:
    assert len([s for s in all_shown if s.program == "catsdogs"]) >= 30
    assert len([s for s in all_shown if s.program == "make"]) >= 15
    assert check(all_shown, cli_root, makefile) == []


def test_every_cli_command_is_shown_somewhere(all_shown, cli_root) -> None:
    shown = {" ".join(s.words[:2]) for s in all_shown if s.program == "catsdogs"}
    shown |= {s.words[0] for s in all_shown if s.program == "catsdogs" and s.words}
    assert _is_group(cli_root)
    missing = sorted(name for name in cli_root.commands if name not in shown)
    assert missing == []


def test_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) < 200


SNIPPET = """Evaluate:

```
catsdogs evaluate --model out/m --data out/d \\
    --output out/e --champion out/c   # compare
make run TRAINERS=both && make test
```

Or inline: `catsdogs schedule delete ID` and `make bench-serve`.
"""


def test_the_parser_reads_blocks_continuations_and_inline_code() -> None:
    shown = shown_commands(SNIPPET)
    assert [(s.program, s.line, s.words) for s in shown] == [
        (
            "catsdogs",
            4,
            ("evaluate", "--model", "out/m", "--data", "out/d", "--output", "out/e")
            + ("--champion", "out/c"),
        ),
        ("make", 6, ("run", "TRAINERS=both")),
        ("make", 6, ("test",)),
        ("catsdogs", 9, ("schedule", "delete", "ID")),
        ("make", 9, ("bench-serve",)),
    ]


def test_the_snippet_passes_against_the_real_app(cli_root, makefile) -> None:
    assert check(shown_commands(SNIPPET), cli_root, makefile) == []


def test_a_renamed_option_fails(makefile) -> None:
    """The same snippet against an app whose ``--data`` became ``--dataset``."""
    renamed = typer.Typer()

    @renamed.command()
    def evaluate(model: str = "", dataset: str = "", output: str = "", champion: str = "") -> None:
        """Evaluate."""

    @renamed.command()
    def other() -> None:
        """Another command, so that Typer keeps a group."""

    problems = check(shown_commands(SNIPPET)[:1], typer.main.get_command(renamed), makefile)
    assert len(problems) == 1
    assert "<snippet>:4" in problems[0] and "has no option --data " in problems[0]


def test_a_misspelt_option_command_target_or_variable_fails(cli_root, makefile) -> None:
    text = (
        "`catsdogs evaluate --modle m`, `catsdogs evalute --model m`, "
        "`catsdogs schedule remove ID`, `make bench-serv`, `make run TRAINER=both`, "
        "`catsdogs compile --servign-*`"
    )
    problems = check(shown_commands(text), cli_root, makefile)
    assert len(problems) == 6
    assert "evaluate has no option --modle" in problems[0]
    assert "has no command 'evalute'" in problems[1]
    assert "catsdogs schedule has no command 'remove'" in problems[2]
    assert "no target 'bench-serv'" in problems[3]
    assert "no variable TRAINER" in problems[4]
    assert "compile has no option --servign-*" in problems[5]


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def broken_links(path: Path) -> list[str]:
    """Relative links of a Markdown file whose target file or heading does not exist."""
    problems = []
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    for target in _LINK.findall(path.read_text()):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        file, _, fragment = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            problems.append(f"{where}: {target}: no file {file}")
        elif fragment and linked.suffix == ".md":
            headings = re.findall(r"^#{1,6} (.+)$", linked.read_text(), flags=re.MULTILINE)
            if fragment not in {github_anchor(h) for h in headings}:
                problems.append(f"{where}: {target}: no heading #{fragment}")
    return problems


def test_every_relative_link_lands() -> None:
    assert github_anchor("Kubeflow Pipelines 2.17 or newer") == "kubeflow-pipelines-217-or-newer"
    assert github_anchor("Using `model.keras` in plain Keras") == "using-modelkeras-in-plain-keras"
    assert [problem for path in DOCS for problem in broken_links(path)] == []


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n")
    page = tmp_path / "probe.md"
    page.write_text("# Title\n\n[a](other.md#no-such-heading) [b](missing.md) [c](#title)\n")
    found = broken_links(page)
    assert len(found) == 2
    assert "no heading #no-such-heading" in found[0] and "no file missing.md" in found[1]
    (tmp_path / "other.md").write_text("# Other\n\n## No such heading\n")
    assert len(broken_links(page)) == 1
