"""The object visitors with ASN.1 identifiers for names: device states as the module's values.

A device state becomes a value of its description's ``SEQUENCE`` type
(:mod:`miglab.encoders.asn1_module`) through the object visitors on the one
walk: members are named by :func:`~miglab.encoders.asn1_module.identifier`,
floats are their 8 IEEE bytes, and an array of structs with one description
per element is a ``SEQUENCE`` of ``e0``, ``e1``, ... (each its own type).
The input visitor is strict, as the object input visitor is.
"""

from __future__ import annotations

import struct
from typing import Any

from miglab.encoders.asn1_module import identifier
from miglab.errors import EncodingError, MigrationFormatError, VisitorError
from miglab.visitors.object_visitor import ObjectInputVisitor, ObjectOutputVisitor
from miglab.vmstate.description import VMStateDescription, VMStateField
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

__all__ = ("Asn1InputVisitor", "Asn1OutputVisitor", "read_state", "state_value")

_F64 = struct.Struct(">d")


class Asn1OutputVisitor(ObjectOutputVisitor):
    """The object tree of a state as the module's typed value.

    Members are named by :func:`identifier`; floats are their 8 IEEE bytes;
    an array of structs with one description per element is a ``SEQUENCE``
    of ``e0``, ``e1``, ... (each its own type).
    """

    takes_runs = False  # every member is renamed on its way in
    describes = True

    def __init__(self) -> None:
        super().__init__()
        self._field: VMStateField | None = None

    def describe_field(self, field: Any) -> None:
        self._field = field

    def _put(self, name: str | None, value: Any) -> None:
        if name is not None:
            name = identifier(name)
        elif self._stack and type(self._stack[-1]) is dict:
            name = f"e{self._index[-1]}"  # an element of a per-element-typed array
        super()._put(name, value)

    def start_list(self, name: str | None, length: int | None) -> int:
        f = self._field
        if name is None or f is None or f.elements is None or length is None:
            return super().start_list(name, length)
        node: dict[str, Any] = {}
        self._put(name, node)
        self._stack.append(node)
        self._push(name)
        self._index.append(0)
        return length

    def type_float64(self, name: str | None, value: float | None) -> float:
        if not isinstance(value, float | int) or isinstance(value, bool):
            raise self.error(f"expected a float, got {value!r}", self.member(name))
        self._put(name, _F64.pack(value))
        return float(value)


class Asn1InputVisitor(ObjectInputVisitor):
    """Reads a state back from the module's typed value, strictly (see the output visitor)."""

    takes_runs = False
    describes = True

    def __init__(self, tree: Any) -> None:
        super().__init__(tree)
        self._field: VMStateField | None = None

    def describe_field(self, field: Any) -> None:
        self._field = field

    def _get(self, name: str | None) -> Any:
        if name is not None:
            return super()._get(identifier(name))
        return super()._get(name)

    def optional(self, name: str, present: bool) -> bool:
        return super().optional(identifier(name), present)

    def start_list(self, name: str | None, length: int | None) -> int:
        f = self._field
        if name is None or f is None or f.elements is None:
            return super().start_list(name, length)
        node = self._get(name)
        keys = [f"e{i}" for i in range(len(f.elements))]
        if not isinstance(node, dict) or sorted(node) != sorted(keys):
            raise self.error(f"expected members {', '.join(keys)}", self.member(name))
        items = [node[k] for k in keys]
        self._stack.append(items)
        self._seen.append(None)
        self._push(name)
        self._index.append(0)
        return len(items)

    def type_float64(self, name: str | None, value: float | None) -> float:
        got = super()._get(identifier(name) if name is not None else None)
        if not isinstance(got, bytes) or len(got) != 8:
            raise self.error("expected the 8 bytes of a double", self.member(name))
        return float(_F64.unpack(got)[0])


def state_value(st: VMState, ref: int, path: str) -> tuple[str, Any]:
    """The ``State`` value of ``st``: alternative ``t<ref>``, its description's typed value."""
    v = Asn1OutputVisitor()
    try:
        visit_vmstate(v, st.desc, st, st.version_id)
    except VisitorError as exc:
        raise EncodingError(exc.message, path=f"{path}.{exc.path}" if exc.path else path) from None
    return (f"t{ref}", v.complete())


def read_state(desc: VMStateDescription, version: int, raw: Any, path: str) -> VMState:
    """The device state a decoded value of ``desc``'s type holds, read strictly."""
    try:
        return visit_vmstate(Asn1InputVisitor(raw), desc, None, version)
    except (VisitorError, MigrationFormatError) as exc:
        raise EncodingError(exc.message, path=f"{path}.{exc.path}" if exc.path else path) from None
