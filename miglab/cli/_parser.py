"""The argument parser of the command line: argparse's layout without :mod:`shutil`.

Kept apart from :mod:`miglab.cli` so that ``miglab --version`` imports no
argparse at all (nor the gettext and locale lookups argparse does for every
parser); every other command builds its parser from here.
"""

from __future__ import annotations

import argparse
import os
import sys

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

__all__ = ("Parser",)


class _Formatter(argparse.HelpFormatter):
    """argparse's help layout, given the terminal's width without :mod:`shutil`.

    argparse makes a formatter for every option it adds and asks
    ``shutil.get_terminal_size`` for the width; importing shutil (and the
    compression modules it imports) would cost every command a few
    milliseconds for help it seldom prints.
    """

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        super().__init__(prog, indent_increment, max_help_position, width or _columns() - 2)


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` finds it: $COLUMNS, stdout's, 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class Parser(argparse.ArgumentParser):
    """An argument parser laid out by :class:`_Formatter` (its subcommands' too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)
