"""Progress on stderr for the long commands, one rule for all of them.

Every command whose work grows with a stream's size (``inspect``, ``dump``, ``verify``,
``convert``, ``compat``, ``extract``, ``diff``, ``export-elf``, ``index``), and the ones
that wait on QEMU (``capture``, ``survives``) or measure (``bench``), take ``--progress``
and ``--no-progress``: progress shows when stderr is a terminal, or with ``--progress``
(a CI log that wants it); ``--no-progress`` silences it, and a script that pipes stderr
gets nothing by default.  Stdout is the same either way.

Two kinds of line, drawn alike as ``what: text [m:ss]``:

* :func:`byte_progress` turns a library call's :data:`~miglab.stream.progress.Progress`
  callback into one line per phase: ``verify: reading 8.1 of 16.0 GB (51%), 1.9 GB/s``;
* :func:`status_line` shows what a QEMU command waits for (booting, migrating with
  bytes sent, watching the heartbeat), each new state as it comes.

A byte line is redrawn at most four times a second, so a callback per record costs a
clock read and nothing measurable.  On a terminal it is redrawn in place, and a phase
over within half a second draws nothing (a quick command leaves no trace).  With
``--progress`` every phase ends with its final line; where stderr is no terminal each
redraw is a line of its own, one every five seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

    from miglab.stream.progress import Progress

__all__ = ("add_progress_arguments", "byte_progress", "progress_enabled", "status_line")

INTERVAL = 0.25  # seconds between two redraws of a byte line: at most four a second
LOG_INTERVAL = 5.0  # ... and where stderr is no terminal, each a line of its own
DELAY = 0.5  # on a terminal, a phase shorter than this draws nothing (unless --progress)


def add_progress_arguments(parser: Any) -> None:
    """Add ``--progress`` / ``--no-progress`` (default: on when stderr is a terminal)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show progress on stderr even when it is not a terminal",
    )
    group.add_argument(
        "--no-progress", dest="progress", action="store_false", help="never show progress"
    )


def progress_enabled(args: argparse.Namespace) -> bool:
    """True when the command should show progress (see the module docstring)."""
    choice = getattr(args, "progress", None)
    return sys.stderr.isatty() if choice is None else bool(choice)


class _Line:
    """One line ``what: text [m:ss]`` on stderr, in place on a terminal."""

    def __init__(self, what: str, *, eager: bool) -> None:
        self.what = what
        self.tty = sys.stderr.isatty()
        self.eager = eager  # drawn at once, and its last state at the end (--progress)
        self.start = time.monotonic()
        self.due = self.start if eager or not self.tty else self.start + DELAY
        self.text = ""
        self.shown: str | None = None  # the text last drawn

    def update(self, text: str, now: float, *, throttle: bool = True) -> None:
        self.text = text
        if now >= self.due or not throttle:
            self.due = now + (INTERVAL if self.tty else LOG_INTERVAL)
            self.draw(now)

    def draw(self, now: float) -> None:
        seconds = int(now - self.start)
        line = f"{self.what}: {self.text} [{seconds // 60}:{seconds % 60:02d}]"
        sys.stderr.write(f"\r{line}\x1b[K" if self.tty else f"{line}\n")
        sys.stderr.flush()
        self.shown = self.text

    def close(self) -> None:
        """Draw the last state if it is not on screen yet, and end the line."""
        if (self.shown is None and not self.eager) or not self.text:
            return
        if self.text != self.shown:
            self.draw(time.monotonic())
        if self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _size(n: float) -> str:
    """Bytes in decimal units, three significant digits or so (``16.0 GB``, ``512 kB``)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale * 0.9995:  # 999.7 kB shows as 1.0 MB, not 1000 kB
            value = n / scale
            return f"{value:.1f} {unit}" if value < 99.95 else f"{value:.0f} {unit}"
    return f"{n:.0f} B"


@contextlib.contextmanager
def byte_progress(args: argparse.Namespace, what: str) -> Iterator[Progress | None]:
    """A :data:`~miglab.stream.progress.Progress` callback drawing ``what``'s phases, or
    None when progress is off (the library call then skips its reports).

    Entering it marks the start of the work: what the command has imported is
    kept out of the cyclic collector's walks (:func:`miglab.cli.freeze_imports`)."""
    from miglab.cli import freeze_imports

    freeze_imports()
    if not progress_enabled(args):
        yield None
        return
    eager = getattr(args, "progress", None) is True
    line: _Line | None = None
    phase = ""
    clock = time.monotonic

    def report(step: str, done: int, total: int) -> None:
        nonlocal line, phase
        now = clock()
        if line is None or step != phase:
            if line is not None:
                line.close()
            line, phase = _Line(what, eager=eager), step
        elif now < line.due and done < total:
            return  # the common case: no text built between two redraws
        seconds = now - line.start
        share = f" ({100 * done // total}%)" if total > 0 else ""
        rate = f", {_size(done / seconds)}/s" if seconds > 0.05 else ""
        line.update(f"{step} {_size(done)} of {_size(total)}{share}{rate}", now)

    try:
        yield report
    finally:
        if line is not None:
            line.close()


@contextlib.contextmanager
def status_line(args: argparse.Namespace, what: str) -> Iterator[Callable[[str], None] | None]:
    """A status reporter for ``what`` (``"capture"``), or None when progress is off.

    The reporter takes the current state as text; the line shows it with the time elapsed,
    each new state as it comes, and stays on screen when the block ends.
    """
    if not progress_enabled(args):
        yield None
        return
    line = _Line(what, eager=True)

    def report(text: str) -> None:
        if text != line.shown:
            line.update(text, time.monotonic(), throttle=False)

    try:
        yield report
    finally:
        line.close()
