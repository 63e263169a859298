"""Marshal and unmarshal filters: small functions on the object tree.

A filter is a callable ``filter(tree) -> tree`` run on every tree on its way
out (marshal: device -> object tree -> *filters* -> encoder) or on its way in
(unmarshal: decoder -> object tree -> *filters* -> device).  Filters are the
lightest kind of compat hook: no versions, no planner, no report; they run in
the order they were registered.  The device pipeline
(:mod:`miglab.devices.pipeline`) calls :func:`apply_marshal_filters` and
:func:`apply_unmarshal_filters`; tests call :func:`clear_filters` to start from
an empty registry.

Example::

    from miglab.compat import filters

    def drop_debug(tree):
        tree.pop("debug", None)
        return tree

    filters.register_marshal_filter(drop_debug)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = (
    "Filter",
    "apply_marshal_filters",
    "apply_unmarshal_filters",
    "clear_filters",
    "register_marshal_filter",
    "register_unmarshal_filter",
)

Filter = Callable[[Any], Any]

_MARSHAL: list[Filter] = []
_UNMARSHAL: list[Filter] = []


def register_marshal_filter(fn: Filter) -> Filter:
    """Run ``fn`` on every tree being marshalled (after the earlier ones).

    Returns ``fn`` so this works as a decorator.
    """
    _MARSHAL.append(fn)
    return fn


def register_unmarshal_filter(fn: Filter) -> Filter:
    """Run ``fn`` on every tree being unmarshalled (after the earlier ones).

    Returns ``fn`` so this works as a decorator.
    """
    _UNMARSHAL.append(fn)
    return fn


def apply_marshal_filters(tree: Any) -> Any:
    """Pass ``tree`` through every marshal filter in registration order."""
    for fn in tuple(_MARSHAL):
        tree = fn(tree)
    return tree


def apply_unmarshal_filters(tree: Any) -> Any:
    """Pass ``tree`` through every unmarshal filter in registration order."""
    for fn in tuple(_UNMARSHAL):
        tree = fn(tree)
    return tree


def clear_filters() -> None:
    """Forget every registered marshal and unmarshal filter."""
    _MARSHAL.clear()
    _UNMARSHAL.clear()
