"""The ``miglab`` command line.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``; the module's function set as ``func`` receives the
parsed arguments and returns the exit status.

One rule for the exit status, in every command:

- 0: the command did what was asked and found nothing wrong;
- 1: it did what was asked and reports findings (``verify`` errors,
  ``check-schemas`` breakage, ``diff`` differences, a guest that did not
  survive, files ``extract`` skipped);
- 2: it could not do what was asked: usage, unreadable input (a file that
  is not a migration stream at all), or a refusal (``compat`` declining a
  guest-visible change).  A :class:`~miglab.errors.MiglabError` is printed
  as one line naming the file and the offset, never as a traceback.

A reader that closes the pipe early (``miglab dump FILE | head``) ends the
command quietly with status 0: the reader got what it asked for.

Every long command takes ``--progress`` / ``--no-progress`` and follows one
rule for them (:mod:`miglab.cli._progress`): progress on stderr when it is a
terminal or when asked, stdout the same either way.

Start-up is part of the interface: ``miglab --version`` and every subcommand
pay only for what they use.  ``miglab COMMAND`` imports only that command's
module (``--help`` and an unknown command import them all, to list them),
and those modules import nothing heavy at the top: each ``run`` imports
the machinery it needs (pandas, numpy, asn1tools, matplotlib stay
out of a command that does not use them; ``tests/cli/test_cli.py``
keeps it so).  What the imports made lives until the process exits, so the
process's own command line keeps the cyclic collector off it
(:func:`freeze_imports`).
"""

from __future__ import annotations

import gc
import os
import sys

from miglab import __version__
from miglab.errors import FileError, MiglabError

# ``typing`` is not imported at run time: ``miglab --version`` needs none of it
# (mypy reads this name as typing.TYPE_CHECKING).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator, Sequence
    from typing import Any

    from miglab.vmstate.from_schema import SchemaIndex

__all__ = (
    "LazyChoices",
    "add_schema_options",
    "build_parser",
    "freeze_imports",
    "main",
    "schema_index",
)

# Whether :func:`freeze_imports` freezes: set by :func:`main` for the process's own command line.
_freeze = False


class LazyChoices:
    """argparse ``choices`` kept in another module, imported only when they are needed.

    argparse reads choices to check a value of the option or to print help, so
    ``LazyChoices("miglab.compat.qemu", "QEMU_VERSIONS")`` costs the compat
    rules' import only in ``miglab compat`` itself.  The attribute may be a
    sequence or a function returning one (``miglab.encoders.names``).  Give
    the option a ``metavar``: without one argparse lists the choices when the
    option is added.  ``extra`` values are accepted besides the module's.
    """

    def __init__(self, module: str, name: str, *, extra: Sequence[str] = ()) -> None:
        self._module, self._name, self._extra = module, name, tuple(extra)

    def _values(self) -> Sequence[str]:
        import importlib

        values = getattr(importlib.import_module(self._module), self._name)
        return (*(values() if callable(values) else values), *self._extra)

    def __contains__(self, value: object) -> bool:
        return value in self._values()

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with the subcommand modules of this package registered.

    With ``command`` (the subcommand about to run) only the module of that
    name is imported, when it registers that command: a command pays for its
    own imports, not for every other one's.  Without it (``--help``, an
    unknown command) every module is registered.
    """
    names = _module_names()
    wanted = command.replace("-", "_") if command else None
    if wanted in names:
        parser, sub = _top_parser()
        _register(sub, [wanted])
        if command in sub.choices:
            return parser
    parser, sub = _top_parser()
    _register(sub, names)
    return parser


def _top_parser() -> tuple[argparse.ArgumentParser, Any]:
    from miglab.cli._parser import Parser

    parser = Parser(
        prog="miglab", description="Inspect, transform and re-encode QEMU migration streams."
    )
    parser.add_argument("--version", action="version", version=f"miglab {__version__}")
    return parser, parser.add_subparsers(dest="command", required=True, metavar="COMMAND")


def _module_names() -> list[str]:
    """The subcommand modules, by file name (pkgutil.iter_modules would import inspect)."""
    return sorted(
        f[:-3] for f in os.listdir(__path__[0]) if f.endswith(".py") and not f.startswith("_")
    )


def _register(sub: Any, names: Sequence[str]) -> None:
    import importlib

    for name in names:
        module = importlib.import_module(f"{__name__}.{name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names: its first word that is no option, or None."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def add_schema_options(p: argparse.ArgumentParser) -> None:
    """The ``--schema`` / ``--schema-hints`` pair of commands that read streams."""
    p.add_argument(
        "--schema", metavar="DUMP", help="a -dump-vmstate JSON, to decode streams without vmdesc"
    )
    p.add_argument(
        "--schema-hints",
        metavar="DUMP",
        help="a -dump-vmstate JSON of QEMU >= 8.1 giving array lengths --schema lacks",
    )


def schema_index(args: Any) -> SchemaIndex | None:
    """The schema the options name, with its hints, or None without ``--schema``."""
    if args.schema is None:
        if args.schema_hints is not None:
            raise MiglabError("--schema-hints needs --schema")
        return None
    from miglab.vmstate.from_schema import SchemaIndex

    return SchemaIndex.load(args.schema, hints=args.schema_hints)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    words = sys.argv[1:] if argv is None else list(argv)
    if words == ["--version"]:  # what argparse would print, without building a parser
        print(f"miglab {__version__}")
        return 0
    global _freeze
    _freeze = argv is None  # this process's own command line, not a caller's in-process call
    if _freeze:
        gc.disable()  # imports make no garbage: the collector would only walk what they made
    command = _command(words)
    # argparse prints the version before it asks for a command: no module is needed.
    version = command is None and "--version" in words
    parser = _top_parser()[0] if version else build_parser(command)
    args = parser.parse_args(words)
    if _freeze:
        freeze_imports()
        gc.enable()
    try:
        status: int = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except MiglabError as exc:
        print(f"miglab: error: {_where(args, exc)}{exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"miglab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return status


def freeze_imports() -> None:
    """Keep the cyclic collector off what the command has imported so far.

    The modules, classes and functions of an import live until the process
    exits, yet each collection of the oldest generation walks them all again:
    in ``miglab inspect`` of a 256 MiB stream that was ~20 M instructions
    (~8% of the process).  :func:`gc.freeze` moves them out of the collector's
    view; :func:`main` calls it once the command's module is imported and
    :func:`~miglab.cli._progress.byte_progress` again when a command that reads
    a stream has imported the reader and starts reading.  Only the process's own
    command line does this (``main()`` without ``argv``): the library, and a
    caller of ``main(argv)`` such as the tests, keep the collector as they had it.
    """
    if _freeze:
        gc.freeze()


def _where(args: argparse.Namespace, exc: MiglabError) -> str:
    """``FILE: `` for a command that reads one input file, so the message names it
    (once: a :class:`~miglab.errors.FileError` about that file names it already)."""
    for name in ("file", "stream"):
        value = getattr(args, name, None)
        if isinstance(value, str):
            return "" if isinstance(exc, FileError) and exc.path == value else f"{value}: "
    return ""


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's last flush cannot fail again."""
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a real file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
