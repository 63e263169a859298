"""A package's public names imported on first use (PEP 562), so importing it stays cheap.

The seams' ``__init__`` modules export their public names once, in ``__all__``, but importing
every module behind them would pull numpy, pandas or the codecs into every process (the
command line's start-up, issue #14).  Each package keeps a table from name to the module that
defines it and sets ``__getattr__ = lazy_attributes(__name__, TABLE)``: the first read of a
name imports its module and keeps the value in the package, so later reads are plain lookups.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing itself is not imported at run time: `miglab --version` is cheap
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = ("lazy_attributes",)


def lazy_attributes(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``, for the names of ``table``.

    ``table`` maps a public name to ``"module"`` (the name is the module's own) or to
    ``"module:attribute"`` (the package exports it under another name).
    """

    def __getattr__(name: str) -> Any:
        where = table.get(name)
        if where is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib  # not at import: `miglab --version` never needs it

        module, _, attribute = where.partition(":")
        value = getattr(importlib.import_module(module), attribute or name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
