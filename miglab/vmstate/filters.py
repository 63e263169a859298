"""Marshal and unmarshal filters: small functions on a device's plain tree, passed as values.

A filter is a callable ``filter(tree) -> tree`` on the plain object tree of one device state
(the tree :class:`~miglab.visitors.object_visitor.ObjectOutputVisitor` builds on the one walk:
members by name, subsections under their full name).  *Marshal* filters run on each state on
its way out of the object tree (device -> tree -> *filters* -> encoder), *unmarshal* filters
on its way in (decoder -> tree -> *filters* -> state).  Filters are the lightest kind of compat
hook: no versions, no planner, no report.

There is no registry: a :class:`Filters` value is an argument of every real path --
:func:`miglab.load` (unmarshal), :func:`miglab.encoders.encode` / ``decode`` (``miglab
convert``), :func:`miglab.compat.convert_stream` and :class:`miglab.compat.qemu.Conversion`
(the live proxy's converter: unmarshal before the transforms, marshal after) and the device
pipeline (:mod:`miglab.devices.pipeline`).  Two calls with different filters share nothing.

A filter is for one device (its vmsd name, ``"e1000"``) or for all (:data:`ALL`); on one
state the device's own filters run first, then those for all, each in the order given.  The
tree a filter returns is read back strictly with the state's description, so a member a
filter dropped or misspelt is a :class:`~miglab.errors.VisitorError` naming it.

Example::

    def no_mac(tree):
        tree["mac_reg[RA]"] = [0] * len(tree["mac_reg[RA]"])
        return tree

    stream = miglab.load(path, filters=Filters.of(unmarshal={"e1000": no_mac}))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from miglab.visitors.object_visitor import ObjectInputVisitor, ObjectOutputVisitor
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

__all__ = ("ALL", "Filter", "FilterSpec", "Filters")

Filter = Callable[[Any], Any]
#: One filter or several for all devices, or a mapping vmsd name (or :data:`ALL`) -> them.
FilterSpec = Filter | Sequence[Filter] | Mapping[str, Filter | Sequence[Filter]]
#: The device name of a filter for every device.
ALL = "*"


def _entries(spec: FilterSpec | None) -> tuple[tuple[str, Filter], ...]:
    if spec is None:
        return ()
    if isinstance(spec, Mapping):
        out: list[tuple[str, Filter]] = []
        for device, fns in spec.items():
            out += [(device, fn) for _, fn in _entries(fns)]
        return tuple(out)
    if callable(spec):
        return ((ALL, spec),)
    return tuple((ALL, fn) for fn in spec)


def _run(entries: tuple[tuple[str, Filter], ...], device: str, tree: Any) -> Any:
    for name, fn in entries:
        if name == device:
            tree = fn(tree)
    for name, fn in entries:
        if name == ALL:
            tree = fn(tree)
    return tree


def _through(entries: tuple[tuple[str, Filter], ...], state: VMState) -> VMState:
    device = state.desc.name
    if not any(name in (device, ALL) for name, _ in entries):
        return state
    v = ObjectOutputVisitor()
    visit_vmstate(v, state.desc, state)
    tree = _run(entries, device, v.complete())
    return visit_vmstate(ObjectInputVisitor(tree), state.desc, None, state.version_id)


@dataclass(frozen=True, slots=True)
class Filters:
    """Marshal and unmarshal filters, each ``(device, filter)`` in the order given.

    Build one with :meth:`of`; an empty ``Filters()`` is false and changes nothing.
    """

    marshal: tuple[tuple[str, Filter], ...] = ()
    unmarshal: tuple[tuple[str, Filter], ...] = ()

    @classmethod
    def of(
        cls, *, marshal: FilterSpec | None = None, unmarshal: FilterSpec | None = None
    ) -> Filters:
        """Filters from a function, a list of them (for all devices) or a mapping
        ``{vmsd name or ALL: function or list}``."""
        return cls(_entries(marshal), _entries(unmarshal))

    def __bool__(self) -> bool:
        return bool(self.marshal or self.unmarshal)

    def marshal_tree(self, device: str, tree: Any) -> Any:
        """``tree`` of ``device`` through the marshal filters."""
        return _run(self.marshal, device, tree)

    def unmarshal_tree(self, device: str, tree: Any) -> Any:
        """``tree`` of ``device`` through the unmarshal filters."""
        return _run(self.unmarshal, device, tree)

    def marshal_state(self, state: VMState) -> VMState:
        """``state`` through its plain tree and the marshal filters of its device; the state
        itself when none applies.

        Raises:
            VisitorError: a filter's tree does not fit the description (names the member).
        """
        return _through(self.marshal, state)

    def unmarshal_state(self, state: VMState) -> VMState:
        """``state`` through its plain tree and the unmarshal filters (as :meth:`marshal_state`)."""
        return _through(self.unmarshal, state)
