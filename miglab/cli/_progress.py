"""Progress on stderr for the long commands (``bench``, ``capture``, ``survives``).

One rule for all of them: progress shows when stderr is a terminal, or with ``--progress``
(a CI log that wants it); ``--no-progress`` silences it, and a script that pipes stderr gets
nothing by default.  ``bench`` counts streams with tqdm's bar; the QEMU commands report
what they are waiting for (booting, migrating with bytes sent, watching the heartbeat) on
one status line, also drawn by tqdm so both look alike.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ("add_progress_arguments", "progress_enabled", "status_line")


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


@contextlib.contextmanager
def status_line(args: argparse.Namespace, what: str) -> Iterator[Callable[[str], None] | None]:
    """A status reporter for ``what`` (``"capture"``), or None when progress is off.

    The reporter takes the current state as text; the line shows it with the time elapsed
    and is rewritten in place, and stays on screen when the block ends.
    """
    if not progress_enabled(args):
        yield None
        return
    from tqdm.auto import tqdm

    with tqdm(file=sys.stderr, bar_format="{desc} [{elapsed}]", desc=what) as bar:

        def report(text: str) -> None:
            bar.set_description_str(f"{what}: {text}")

        yield report
