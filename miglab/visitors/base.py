"""The visitor contract and the ``visit_*`` functions that drive it.

A *visitor* walks a piece of device state member by member.  The code that
walks is written once, for example::

    def visit_port(v: Visitor, port: dict | None) -> dict:
        port = port or {}
        visit_start_struct(v, "port")
        port["id"] = visit_type_u32(v, "id", port.get("id"))
        port["guest_connected"] = visit_type_bool(v, "guest_connected", port.get("guest_connected"))
        visit_end_struct(v)
        return port

and the visitor decides the direction:

* an **output** visitor reads each value it is given and produces an external
  form (QEMU's binary stream, or an object tree); the function returns the
  value unchanged.  Output fails only when a value does not fit its type
  (a ``u8`` of 256 is an error, never a silent wrap) or is missing (None).
* an **input** visitor ignores the value it is given (pass None) and returns
  the value read from its external form.  Input can fail anywhere: the input
  may be short, of the wrong type, or lack a member.

Every failure is a :class:`~miglab.errors.VisitorError` (or, for bytes, a
:class:`~miglab.errors.MigrationFormatError`) whose ``path`` names the member
(``port.guest_connected``, ``e1000.mac_reg[3]``) and, for byte input, whose
``offset`` says where.  After an error the visitor is unusable: start again
with a new one.  Pairs must balance: every successful ``visit_start_struct``
is followed by ``visit_end_struct`` (likewise lists).

Lists: ``n = visit_start_list(v, name, length)`` returns the element count
(output and QEMUFile visitors use ``length``, an object input visitor reads it
from the tree); visit each element with ``name=None`` and call
``visit_next_list(v)`` after each, then ``visit_end_list(v)``.

Before ending a struct, ``visit_check_struct(v)`` gives the visitor its last
chance to complain (QEMU's ``visit_check_struct``): the strict object input
visitor reports members nobody read, the QEMUFile input visitor a subsection
header nobody claimed.

Capabilities.  A visitor may declare what more it can do, and the walker
(:func:`miglab.vmstate.walk.visit_vmstate`) asks the capability, never the
visitor's class:

* ``takes_runs``: the visitor carries a whole *run* of consecutive fixed-size
  fields at once (:meth:`Visitor.visit_run`, runs compiled by
  :mod:`miglab.vmstate.layout`) -- the fast path of the wire visitors, the
  sizing visitor and the plain-tree visitors;
* ``takes_plans``: the visitor carries a whole struct at once, nested
  structs, fixed arrays of structs and subsections included
  (:meth:`Visitor.visit_plan`, plans compiled by :mod:`miglab.vmstate.layout`
  for descriptions made only of runs and such structs) -- the fast path of
  the plain-tree visitors, which copy a tree of dicts without the walk's
  per-struct bookkeeping.  A plan is made of runs: a visitor (or subclass)
  that turns ``takes_runs`` off gets no plans either;
* ``describes``: the visitor wants to know the description field it is about
  to visit (:meth:`Visitor.describe_field`), and the description and version
  of each struct (:meth:`Visitor.describe_struct`), as QEMU's vmdesc writer
  does inside ``vmstate_save_state``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from miglab.errors import VisitorError

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

    from miglab.visitors.compiled import FieldRun, StructPlan

__all__ = (
    "Visitor",
    "visit_check_struct",
    "visit_end_list",
    "visit_end_struct",
    "visit_next_list",
    "visit_optional",
    "visit_start_list",
    "visit_start_struct",
    "visit_start_subsection",
    "visit_type_bool",
    "visit_type_buffer",
    "visit_type_float64",
    "visit_type_i8",
    "visit_type_i16",
    "visit_type_i32",
    "visit_type_i64",
    "visit_type_int_array",
    "visit_type_str",
    "visit_type_u8",
    "visit_type_u16",
    "visit_type_u32",
    "visit_type_u64",
)


def int_range(size: int, signed: bool) -> tuple[int, int]:
    """The inclusive range of an integer of ``size`` bytes."""
    bits = size * 8
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


# How one field's items come out of a run's unpacked tuple (``FieldRun.slots``; the
# shapes of runs and plans are in miglab.visitors.compiled).
RUN_SCALAR, RUN_BOOL, RUN_LIST = range(3)

# What one step of a struct plan is (``StructPlan.steps``): a run of fixed-size
# fields, a nested struct, a fixed-length array of structs.
PLAN_RUN, PLAN_STRUCT, PLAN_STRUCTS = range(3)


class Visitor(ABC):
    """Base of every visitor: keeps the member path and checks values.

    Subclasses implement the ``_``-less abstract methods below; callers use the
    module-level ``visit_*`` functions, which mirror QEMU's names.
    """

    is_input: bool = False
    #: Capability: :meth:`visit_run` carries compiled runs of fixed-size fields.
    takes_runs: bool = False
    #: Capability: :meth:`visit_plan` carries a whole compiled struct.
    takes_plans: bool = False
    #: Capability: :meth:`describe_field` is told each field before it is visited.
    describes: bool = False

    def __init__(self) -> None:
        self._path: list[str] = []
        self._index: list[int] = []

    # --- path bookkeeping -------------------------------------------------
    def path(self, name: str | None = None) -> str:
        """The dotted member path of ``name`` at the current position."""
        parts = [*self._path, name] if name is not None else self._path
        out = ""
        for part in parts:
            if part:  # the unnamed top-level struct adds nothing
                out += part if part.startswith("[") or not out else "." + part
        return out

    def _push(self, name: str | None) -> None:
        if name is None:
            name = f"[{self._index[-1]}]" if self._index else ""
        self._path.append(name)

    def _pop(self) -> None:
        self._path.pop()

    def error(self, message: str, name: str | None = None) -> VisitorError:
        """A :class:`VisitorError` naming the member ``name`` (or the current one)."""
        return VisitorError(message, path=self.path(name if name is not None else self._elem()))

    def _elem(self) -> str | None:
        return f"[{self._index[-1]}]" if self._index else None

    def member(self, name: str | None) -> str | None:
        """The name to report for a member: list elements are ``[i]``."""
        return name if name is not None else self._elem()

    def check_int(self, name: str | None, value: Any, size: int, signed: bool) -> int:
        """Return ``value`` if it is an int that fits, else raise a VisitorError."""
        if value is None:
            raise self.error("has no value", self.member(name))
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"expected an integer, got {type(value).__name__}", self.member(name))
        lo, hi = int_range(size, signed)
        if not lo <= value <= hi:
            kind = f"{'i' if signed else 'u'}{size * 8}"
            raise self.error(f"value {value} does not fit {kind} [{lo}, {hi}]", self.member(name))
        return value

    def check_int_array(self, name: str | None, values: list[int], size: int, signed: bool) -> None:
        """Raise a VisitorError naming the first element of ``values`` that does not fit."""
        self._push(name)
        self._index.append(0)
        for i, item in enumerate(values):
            self._index[-1] = i
            self.check_int(None, item, size, signed)
        self._index.pop()
        self._pop()

    # --- optional hooks and capabilities ------------------------------------
    def check_struct(self, name: str | None) -> None:
        """Complain, before the struct ends, about what nobody visited (default: nothing).

        ``name`` is the description's name (subsection names start with it).
        """
        return None

    def offset(self) -> int | None:
        """The byte offset in the external form, for visitors over bytes (else None)."""
        return None

    def visit_run(self, run: FieldRun, src: dict[str, Any] | None, values: dict[str, Any]) -> bool:
        """Visit a run of fixed-size fields in one step (visitors with ``takes_runs``).

        Output visitors take the values from ``src``; every visitor records
        the values visited in ``values``.  Return False, having done nothing,
        when the run must be visited field by field instead (that path
        raises the precise error).
        """
        return False

    def visit_struct_run(
        self,
        name: str | None,
        desc_name: str,
        run: FieldRun,
        src: dict[str, Any] | None,
        values: dict[str, Any],
    ) -> bool:
        """Visit a whole struct member ``name`` that is one run (``takes_runs``).

        Such structs (timers, queue heads, PCI capability parts: most of
        QEMU's structs) have no subsections; ``desc_name`` is their
        description's name for :meth:`check_struct`.  Input visitors record
        the values read in ``values``; output visitors need not (the walker
        answers with the state it was given).  False, having done nothing,
        to have the walker visit the struct field by field.
        """
        return False

    def visit_struct_runs(
        self,
        name: str,
        desc_name: str,
        run: FieldRun,
        srcs: list[dict[str, Any]] | None,
        count: int,
    ) -> list[dict[str, Any]] | None:
        """Visit list member ``name`` of ``count`` structs that are each one run (``takes_runs``).

        Output visitors take each element's values from ``srcs``.  Return
        each element's values visited, or None, having done nothing, to have
        the walker visit the list element by element.
        """
        return None

    def visit_plan(self, name: str | None, plan: StructPlan, state: Any) -> Any:
        """Visit struct member ``name`` whole, following ``plan`` (``takes_plans``).

        Output visitors take the values from ``state`` (a state at
        ``plan.version``).  Return the state visited (output: ``state``;
        input: the state read, built with ``plan.make``), or None, having done
        nothing, to have the walker visit the struct step by step (that path
        raises the precise error).
        """
        return None

    def describe_field(self, field: Any) -> None:
        """Told the description field about to be visited (visitors with ``describes``)."""
        return None

    def describe_struct(self, desc: Any, version: int) -> None:
        """Told the description and version of the struct about to be visited (the top
        level, a nested struct, an array element, a subsection; visitors with ``describes``)."""
        return None

    # --- the contract -----------------------------------------------------
    @abstractmethod
    def start_struct(self, name: str | None) -> None:
        """Begin a struct member (or the top-level object when ``name`` is None)."""

    @abstractmethod
    def end_struct(self) -> None:
        """End the struct begun by the matching :meth:`start_struct`."""

    @abstractmethod
    def start_list(self, name: str | None, length: int | None) -> int:
        """Begin a list; return how many elements follow."""

    def next_list(self) -> None:
        """Move to the next list element."""
        self._index[-1] += 1

    @abstractmethod
    def end_list(self) -> None:
        """End the list begun by the matching :meth:`start_list`."""

    @abstractmethod
    def type_int(self, name: str | None, value: int | None, size: int, signed: bool) -> int:
        """Visit an integer of ``size`` bytes."""

    @abstractmethod
    def type_bool(self, name: str | None, value: bool | None) -> bool:
        """Visit a boolean."""

    @abstractmethod
    def type_float64(self, name: str | None, value: float | None) -> float:
        """Visit an IEEE-754 double."""

    @abstractmethod
    def type_str(self, name: str | None, value: str | None) -> str:
        """Visit a short string (QEMU's counted string on the wire)."""

    @abstractmethod
    def type_buffer(self, name: str | None, value: bytes | None, size: int) -> bytes:
        """Visit ``size`` raw bytes."""

    @abstractmethod
    def optional(self, name: str, present: bool) -> bool:
        """Visit the presence flag of an optional member; return it."""

    @abstractmethod
    def start_subsection(self, name: str, version: int, present: bool) -> int | None:
        """Visit a VMState subsection header; return its version if present."""

    def int_array(
        self, name: str | None, values: list[int] | None, count: int, size: int, signed: bool
    ) -> list[int]:
        """Visit ``count`` integers at once (a fast path for arrays)."""
        n = self.start_list(name, count if values is None else len(values))
        out = []
        for i in range(n):
            out.append(self.type_int(None, None if values is None else values[i], size, signed))
            self.next_list()
        self.end_list()
        return out


# --- the public functions, named as in QEMU's include/qapi/visitor.h ------
def visit_start_struct(v: Visitor, name: str | None = None) -> None:
    """Begin visiting a struct member ``name``."""
    v.start_struct(name)


def visit_end_struct(v: Visitor) -> None:
    """End the current struct."""
    v.end_struct()


def visit_check_struct(v: Visitor, name: str | None = None) -> None:
    """Let the visitor complain about members nobody visited (before :func:`visit_end_struct`)."""
    v.check_struct(name)


def visit_start_list(v: Visitor, name: str | None, length: int | None = None) -> int:
    """Begin a list; return the element count (input visitors may read it)."""
    return v.start_list(name, length)


def visit_next_list(v: Visitor) -> None:
    """Advance to the next list element."""
    v.next_list()


def visit_end_list(v: Visitor) -> None:
    """End the current list."""
    v.end_list()


def visit_optional(v: Visitor, name: str, present: bool = False) -> bool:
    """Visit whether optional member ``name`` is present; return the flag."""
    return v.optional(name, present)


def visit_start_subsection(
    v: Visitor, name: str, version: int, present: bool = False
) -> int | None:
    """Visit a VMState subsection header; its version if present, else None."""
    return v.start_subsection(name, version, present)


def visit_type_u8(v: Visitor, name: str | None, value: int | None = None) -> int:
    """Visit an unsigned 8-bit integer."""
    return v.type_int(name, value, 1, False)


def visit_type_u16(v: Visitor, name: str | None, value: int | None = None) -> int:
    """Visit an unsigned 16-bit integer."""
    return v.type_int(name, value, 2, False)


def visit_type_u32(v: Visitor, name: str | None, value: int | None = None) -> int:
    """Visit an unsigned 32-bit integer."""
    return v.type_int(name, value, 4, False)


def visit_type_u64(v: Visitor, name: str | None, value: int | None = None) -> int:
    """Visit an unsigned 64-bit integer."""
    return v.type_int(name, value, 8, False)


def visit_type_i8(v: Visitor, name: str | None, value: int | None = None) -> int:
    """Visit a signed 8-bit integer."""
    return v.type_int(name, value, 1, True)


def visit_type_i16(v: Visitor, name: str | None, value: int | None = None) -> int:
    """Visit a signed 16-bit integer."""
    return v.type_int(name, value, 2, True)


def visit_type_i32(v: Visitor, name: str | None, value: int | None = None) -> int:
    """Visit a signed 32-bit integer."""
    return v.type_int(name, value, 4, True)


def visit_type_i64(v: Visitor, name: str | None, value: int | None = None) -> int:
    """Visit a signed 64-bit integer."""
    return v.type_int(name, value, 8, True)


def visit_type_bool(v: Visitor, name: str | None, value: bool | None = None) -> bool:
    """Visit a boolean (one byte 0/1 on QEMU's wire)."""
    return v.type_bool(name, value)


def visit_type_float64(v: Visitor, name: str | None, value: float | None = None) -> float:
    """Visit a double (be64 of its IEEE-754 bits on QEMU's wire)."""
    return v.type_float64(name, value)


def visit_type_str(v: Visitor, name: str | None, value: str | None = None) -> str:
    """Visit a string of at most 255 bytes (a counted string on QEMU's wire)."""
    return v.type_str(name, value)


def visit_type_buffer(v: Visitor, name: str | None, value: bytes | None, size: int) -> bytes:
    """Visit ``size`` raw bytes."""
    return v.type_buffer(name, value, size)


def visit_type_int_array(
    v: Visitor,
    name: str | None,
    values: list[int] | None,
    count: int,
    size: int,
    signed: bool = False,
) -> list[int]:
    """Visit an array of ``count`` integers of ``size`` bytes in one call."""
    return v.int_array(name, values, count, size, signed)
