"""The console of ``catsdogs run``: a line per task start and end, progress lines, logs in files.

kfp.local prints all it does to ``sys.stdout``: its own lines (``Executing task 'x'``, ``Task 'x'
finished with status SUCCESS``, each task's outputs) and, indented, every line of the task's
subprocess (the KFP executor's INFO lines, the executor input as JSON, then the component's own
output). :class:`TaskConsole` stands in for ``sys.stdout`` during a run: every line goes to the log
file of the task it belongs to, and the console gets a line when a task starts and when it ends,
with the task's progress lines (epochs, features, images/s) and warnings in between. A task that
failed with a user error (a ``CatsdogsError``) leaves that error's message in ``errors`` for the
run's last line (``task_errors``); any other failure shows the task's last lines, so the
traceback is on screen with the path of the whole log.
Every line is redacted first (``redaction.redact``): the executor input that KFP logs holds the
run's parameters, and a source URL may carry credentials.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TextIO

from catsdogs.components.common.redaction import redact
from catsdogs.pipelines import task_errors

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"Executing task '(?P<task>[^']+)'")
_END = re.compile(r"Task '(?P<task>[^']+)' finished with status (?P<status>[A-Z]+)")
# The components' own progress lines (trainers, features, prepare's validation, pick-better).
_PROGRESS = re.compile(
    r"^(Epoch \d+/\d+ |Features of |Reusing cached |Resumed from epoch |Done: |Validating: 100%"
    r"|Evaluating \w+: |Exporting version |scratch=\S+ transfer=\S+ -> )"
)
# Lines a user may need to act on, wherever they come from.
_ALERT = re.compile(r"Warning\b|^WARNING\b|^[WEF]\d{4} |Error\b")
# kfp.local's own lines (timestamp - LEVEL - message) and its executor's: only for the log file.
# It indents the lines of a task's subprocess by TASK_INDENT.
_KFP = re.compile(r"^(\d\d:\d\d:\d\d\.\d+ - [A-Z]+ - |\[KFP Executor )")
TASK_INDENT = "    "
FAILED_TAIL_LINES = 25
RUN_LOG = "run.log"
TASK_LOG = "task.log"


@dataclasses.dataclass
class TaskTimes:
    """When each task started and how it ended, by task name (in the order they ran)."""

    started: dict[str, float] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    status: dict[str, str] = dataclasses.field(default_factory=dict)
    errors: dict[str, str] = dataclasses.field(default_factory=dict)  # user errors, by task


class TaskConsole(io.TextIOBase):
    """A ``sys.stdout`` for a kfp.local run: task logs to files, a short story to the console.

    Args:
        console: Where the short story goes (the real stdout).
        logs: A folder for the logs: ``<task>.log`` per task and ``run.log`` for kfp.local's lines
            outside any task.
    """

    def __init__(self, console: TextIO, logs: Path) -> None:
        super().__init__()
        self.console = console
        self.logs = logs
        self.times = TaskTimes()
        self._task = ""
        self._pending = ""
        self._log: IO[str] = (logs / RUN_LOG).open("a", encoding="utf-8")
        self._tail: collections.deque[str] = collections.deque(maxlen=FAILED_TAIL_LINES)
        self._traceback = False

    def writable(self) -> bool:
        """Always: this is an output stream."""
        return True

    def write(self, text: str) -> int:
        """Take any piece of output; complete lines are handled at once."""
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._line(line)
        return len(text)

    def flush(self) -> None:
        """Flush the open log file and the console."""
        self._log.flush()
        self.console.flush()

    def close(self) -> None:
        """Handle a last unfinished line and close the open log file."""
        if self._pending:
            self._line(self._pending)
            self._pending = ""
        super().close()
        self._log.close()

    def _say(self, line: str) -> None:
        self.console.write(line + "\n")
        self.console.flush()

    def _line(self, raw: str) -> None:
        line = redact(plain(raw)).rstrip("\r")  # credentials of URLs never reach a log
        if start := _START.search(line):
            self._begin(start["task"])
        self._log.write(line + "\n")
        if end := _END.search(line):
            self._end(end["task"], end["status"])
            return
        text = line.removeprefix(TASK_INDENT).rsplit("\r", 1)[-1].rstrip()
        if not self._task or not text.strip() or _KFP.match(text) or start:
            return
        if text.startswith("Traceback (most recent call last)"):
            self._traceback = True  # shown whole if the task fails, not line by line
            self._tail.clear()
        self._tail.append(text)
        if _PROGRESS.match(text) or (_ALERT.search(text) and not self._traceback):
            self._say(f"    {text.strip()}")

    def _begin(self, task: str) -> None:
        self._log.close()
        self._task = task
        self._log = (self.logs / f"{task}.log").open("a", encoding="utf-8")
        self._tail.clear()
        self._traceback = False
        self.times.started[task] = time.monotonic()
        self._say(f"[{time.strftime('%H:%M:%S')}] {task} ...")

    def _end(self, task: str, status: str) -> None:
        seconds = time.monotonic() - self.times.started.get(task, time.monotonic())
        self.times.seconds[task] = seconds
        self.times.status[task] = status
        error = task_errors.user_error(self._tail) if status != "SUCCESS" else None
        if error is not None:
            self.times.errors[task] = error
        elif status != "SUCCESS":
            self._say(f"    ... last lines of {task}'s log:")
            for text in self._tail:
                self._say(f"    | {text}")
        word = "done" if status == "SUCCESS" else status
        self._say(f"[{time.strftime('%H:%M:%S')}] {task} {word} in {format_seconds(seconds)}")


def plain(text: str) -> str:
    """``text`` without terminal colour codes (kfp.local colours task names and statuses)."""
    return _ANSI.sub("", text)


def format_seconds(seconds: float) -> str:
    """``4.2 s``, ``38 s`` or ``3 min 05 s``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


@contextlib.contextmanager
def task_console(logs: Path) -> Iterator[TaskConsole]:
    """Route ``sys.stdout`` through a :class:`TaskConsole` writing logs under ``logs``."""
    logs.mkdir(parents=True, exist_ok=True)
    console = TaskConsole(sys.stdout, logs)
    with contextlib.redirect_stdout(console):
        try:
            yield console
        finally:
            console.close()


def place_logs(logs: Path, run_dir: Path) -> dict[str, Path]:
    """Move each task's log beside its artifacts (``<run>/<task>/task.log``); returns them by task.

    ``run.log`` (kfp.local's lines outside any task) goes to ``<run>/run.log``; a task without a
    folder keeps its log as ``<run>/<task>.log``. ``logs`` is removed when it is left empty.
    """
    placed: dict[str, Path] = {}
    for log in sorted(logs.glob("*.log")):
        task = log.stem
        if log.name == RUN_LOG:
            target = run_dir / RUN_LOG
        elif (run_dir / task).is_dir():
            target = run_dir / task / TASK_LOG
        else:
            target = run_dir / log.name
        log.replace(target)
        if log.name != RUN_LOG:
            placed[task] = target
    with contextlib.suppress(OSError):
        logs.rmdir()
    return placed
