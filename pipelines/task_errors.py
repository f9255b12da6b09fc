"""A failed task's user error, found in its log and told in the words of ``catsdogs run``.

A task runs in a subprocess (kfp.local) or a container, so its exception reaches ``catsdogs run``
only as the traceback in its log. The traceback's last line is ``module.Class: message``; when the
class is a :class:`~catsdogs.components.common.errors.CatsdogsError`, that message is the run's
own last line (``user_error``), instead of the traceback.

The components' messages name the options of their own commands (``catsdogs prepare
--val-fraction``, ``catsdogs train-transfer --mode``). ``in_run_terms`` renames those that
``catsdogs run`` spells differently (``--mode`` is ``--transfer-mode``) and drops the sentences
that name an option ``run`` does not have, so the advice names only options the user can pass.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable

from catsdogs.components.common.errors import CatsdogsError

# ``module.Class: message``, the last line of a Python traceback.
_EXCEPTION_LINE = re.compile(r"^(?P<cls>catsdogs(?:\.\w+)+): (?P<message>.+)$")
_OPTION = re.compile(r"--[a-z][a-z0-9-]*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(`])")
# A component option -> the pipeline parameter's option, by task (the component's name).
RENAMES: dict[str, dict[str, str]] = {
    "train-scratch": {
        "--epochs": "--scratch-epochs",
        "--architecture": "--scratch-architecture",
        "--augmentation": "--scratch-augmentation",
        "--steps-per-epoch": "--scratch-steps-per-epoch",
    },
    "train-transfer": {"--epochs": "--transfer-epochs", "--mode": "--transfer-mode"},
    "promote": {"--champion": "--champion-uri"},
}


def user_error(lines: Iterable[str]) -> str | None:
    """The message of the last ``CatsdogsError`` line in a traceback, or None (a bug, or none)."""
    found = None
    for line in lines:
        match = _EXCEPTION_LINE.match(line.strip())
        if match and _is_user_error(match["cls"]):
            found = match["message"].strip()
        elif match:
            found = None  # a later exception that is not a user error: a bug
    return found


def _is_user_error(dotted: str) -> bool:
    module, _, name = dotted.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, CatsdogsError)


def in_run_terms(task: str, message: str, options: set[str]) -> str:
    """``message`` with the task's options renamed, without sentences naming other options.

    Args:
        task: The failed task's name (``train-transfer``, ``train-transfer-2``...).
        message: The task's error message.
        options: The options of the command the user typed (``--train-per-class``...).
    """
    base = re.sub(r"-\d+$", "", task)
    renames = RENAMES.get(base, {})
    renamed = _OPTION.sub(lambda m: renames.get(m.group(0), m.group(0)), message)
    sentences = _SENTENCE_END.split(renamed)
    kept = [
        sentence
        for index, sentence in enumerate(sentences)
        if index == 0 or all(option in options for option in _OPTION.findall(sentence))
    ]
    return " ".join(kept)
