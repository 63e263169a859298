"""The sizing visitor: where every field of a state sits on QEMU's wire, and its leaves.

QEMU's wire has no tags, so a field's offset follows from the sizes of the
fields before it, and a field's size from its description and value.
:class:`SizingVisitor` is an output visitor on the one walk
(:func:`~miglab.vmstate.walk.visit_vmstate`) that writes nothing: it counts
the bytes the QEMUFile output visitor would write and, per leaf, records a
:class:`Leaf` (member path, description field, value, size, offset).  The
pandas field table, the vmdesc ``size`` of a nested struct and
:func:`iter_leaves` are all this one visitor.

Leaves: a scalar is one leaf; an array of scalars is one leaf whose value is
the list; arrays of structs are visited element by element
(``ports[3].portsc``); subsections appear under their full name
(``fw_cfg/dma.dma_addr``), their 7-byte-plus-name header counted in the
offsets.  Runs of fixed-size fields (``takes_runs``) are sized from their
compiled layout, without a call per field.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from typing import TYPE_CHECKING, Any, NamedTuple

from miglab.visitors.base import Visitor
from miglab.vmstate.description import VMStateDescription, VMStateField
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

if TYPE_CHECKING:
    from miglab.visitors.compiled import FieldRun

__all__ = ("Leaf", "SizingVisitor", "iter_leaves", "wire_size")


class Leaf(NamedTuple):
    """One leaf field: where it is and what it holds.

    :attr:`SizingVisitor.leaves` holds these as plain tuples of the same
    order (building named tuples was a third of the field table's time).
    """

    path: str
    field: VMStateField
    value: Any
    size: int
    offset: int


class SizingVisitor(Visitor):
    """Counts QEMU wire bytes from ``offset`` on; ``leaves`` lists every leaf met.

    Args:
        offset: the wire offset of the first byte visited.
        prefix: prepended to every leaf path (``"dev."``).
        leaves: False to only count (``pos`` is then all that is kept).
    """

    is_input = False
    takes_runs = True
    describes = True

    def __init__(self, offset: int = 0, prefix: str = "", *, leaves: bool = True) -> None:
        super().__init__()
        self.pos = offset
        self.leaves: list[tuple[str, VMStateField, Any, int, int]] = []  # Leaf order
        self._keep = leaves
        self._prefixes = [prefix]  # the path prefix of each open struct or list
        self._field: Any = None
        self._collect: list[list[Any] | None] = []  # per open list: its scalar items, or None
        self._list_start: list[int] = []

    # --- paths ---------------------------------------------------------------
    def _where(self, name: str | None) -> str:
        """The path of member ``name`` (None: the current list element)."""
        if name is None:
            if self._index:
                return f"{self._prefixes[-1]}[{self._index[-1]}]"
            return self._prefixes[-1].removesuffix(".")
        return self._prefixes[-1] + name

    def _leaf(self, name: str | None, value: Any, size: int) -> None:
        if self._collect and self._collect[-1] is not None and name is None:
            self._collect[-1].append(value)
        elif self._keep:
            self.leaves.append((self._where(name), self._field, value, size, self.pos))
        self.pos += size

    # --- capabilities ----------------------------------------------------------
    def describe_field(self, field: Any) -> None:
        self._field = field

    def visit_run(self, run: FieldRun, src: dict[str, Any] | None, values: dict[str, Any]) -> bool:
        # Sizes are the description's: the wire writer, not this visitor,
        # decides whether the values fit them.
        if src is None:
            return False
        try:
            vals = run.take(src)
        except KeyError:
            return False
        if self._keep:
            prefix, pos = self._prefixes[-1], self.pos
            self.leaves.extend(
                zip(
                    map(prefix.__add__, run.names),
                    run.fields,
                    vals,
                    run.sizes,
                    map(pos.__add__, run.offsets),
                    strict=True,
                )
            )
        self.pos += run.struct.size
        values.update(zip(run.names, vals, strict=True))
        return True

    def visit_struct_runs(
        self,
        name: str,
        desc_name: str,
        run: FieldRun,
        srcs: list[dict[str, Any]] | None,
        count: int,
    ) -> list[dict[str, Any]] | None:
        if srcs is None:
            return None
        take, size = run.take, run.struct.size
        try:
            rows = [take(src) for src in srcs]
        except KeyError:
            return None
        if self._keep:
            # The leaves of all elements in one zip: a column per leaf tuple
            # item, built by comprehensions (an element costs no calls).
            base = self._where(name)
            names, offsets, n = run.names, run.offsets, len(rows)
            pos = self.pos
            self.leaves.extend(
                zip(
                    [p + f for p in [f"{base}[{i}]." for i in range(n)] for f in names],
                    run.fields * n,
                    chain.from_iterable(rows),
                    run.sizes * n,
                    [pos + i * size + o for i in range(n) for o in offsets],
                    strict=True,
                )
            )
        self.pos += size * len(rows)
        return srcs

    def visit_struct_run(
        self,
        name: str | None,
        desc_name: str,
        run: FieldRun,
        src: dict[str, Any] | None,
        values: dict[str, Any],
    ) -> bool:
        where = self._where(name)
        self._prefixes.append(where + "." if where else "")
        done = self.visit_run(run, src, values)
        self._prefixes.pop()
        return done

    # --- the contract ------------------------------------------------------------
    def start_struct(self, name: str | None) -> None:
        where = self._where(name)
        self._prefixes.append(where + "." if where else "")
        self._collect.append(None)
        self._push(name)

    def end_struct(self) -> None:
        self._prefixes.pop()
        self._collect.pop()
        self._pop()

    def start_list(self, name: str | None, length: int | None) -> int:
        if length is None:
            raise self.error("list length is unknown", self.member(name))
        scalars = self._field is not None and self._field.kind != "struct"
        self._list_start.append(self.pos)
        self._prefixes.append(self._where(name))
        self._collect.append([] if scalars else None)
        self._push(name)
        self._index.append(0)
        return length

    def end_list(self) -> None:
        items = self._collect.pop()
        where = self._prefixes.pop()
        start = self._list_start.pop()
        self._index.pop()
        self._pop()
        if items is not None and self._keep:
            self.leaves.append((where, self._field, items, self.pos - start, start))

    def type_int(self, name: str | None, value: int | None, size: int, signed: bool) -> int:
        value = self.check_int(name, value, size, signed)
        kind = self._field.kind if self._field is not None else "int"
        self._leaf(name, None if kind == "null" else value, size)
        return value

    def int_array(
        self, name: str | None, values: list[int] | None, count: int, size: int, signed: bool
    ) -> list[int]:
        if values is None:
            raise self.error("has no value", self.member(name))
        self._leaf(name, values, size * len(values))
        return values

    def type_bool(self, name: str | None, value: bool | None) -> bool:
        if not isinstance(value, bool):
            raise self.error(f"expected a bool, got {value!r}", self.member(name))
        self._leaf(name, value, 1)
        return value

    def type_float64(self, name: str | None, value: float | None) -> float:
        if not isinstance(value, float | int) or isinstance(value, bool):
            raise self.error(f"expected a float, got {value!r}", self.member(name))
        self._leaf(name, value, 8)
        return value

    def type_str(self, name: str | None, value: str | None) -> str:
        if not isinstance(value, str):
            raise self.error(f"expected a str, got {value!r}", self.member(name))
        self._leaf(name, value, 1 + len(value.encode()))
        return value

    def type_buffer(self, name: str | None, value: bytes | None, size: int) -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise self.error(f"expected {size} bytes, got {value!r:.40}", self.member(name))
        self._leaf(name, value, len(value))
        return value

    def optional(self, name: str, present: bool) -> bool:
        self.pos += 1
        return present

    def start_subsection(self, name: str, version: int, present: bool) -> int | None:
        if not present:
            return None
        self.pos += 1 + 1 + len(name.encode()) + 4  # 0x05, counted name, be32 version
        return version


def wire_size(state: VMState, desc: VMStateDescription | None = None) -> int:
    """Bytes ``state`` takes on QEMU's wire (what the QEMUFile output visitor writes).

    ``desc`` walks the state by another description than its own (an array
    element's).
    """
    v = SizingVisitor(leaves=False)
    visit_vmstate(v, desc if desc is not None else state.desc, state)
    return v.pos


def iter_leaves(state: VMState, prefix: str = "") -> Iterator[tuple[str, VMStateField, Any]]:
    """Yield ``(path, field, value)`` for every leaf, depth first, in wire order.

    Arrays of scalars are one leaf (their value a list); arrays of structs
    are walked element by element (``ports[3].portsc``).  Subsections appear
    under their full name (``fw_cfg/dma.dma_addr``).
    """
    v = SizingVisitor(prefix=prefix)
    visit_vmstate(v, state.desc, state)
    for path, f, value, _, _ in v.leaves:
        yield path, f, value
