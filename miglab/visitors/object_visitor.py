"""Visitors over an in-memory object tree (QEMU's QObject visitors).

The tree is plain Python: a struct is a ``dict`` (members in visit order,
subsections under their full name such as ``"fw_cfg/dma"``), a list is a
``list``, integers/bools/floats/strings are themselves and buffers are
``bytes``.  :class:`ObjectOutputVisitor` builds such a tree and returns it
from :meth:`~ObjectOutputVisitor.complete`; :class:`ObjectInputVisitor`
reads one back, strictly: a missing member, a wrong type or an integer that
does not fit is a :class:`~miglab.errors.VisitorError` naming the member,
and so is a member nobody read (:meth:`ObjectInputVisitor.check_struct`,
QEMU's ``visit_check_struct``), so a misspelt or stale key is never
silently dropped.

This is the *one* plain-tree shape: the self-describing encoders (JSON,
CBOR, MessagePack, ASN.1) carry device state as exactly these trees, field
names included.  Both visitors take compiled runs of fixed-size fields
(``takes_runs``): a run of scalars is checked with one ``struct.pack`` (the
same range check QEMU's wire imposes) and copied at once; a run with arrays
or buffers, an array of structs that are one run, and an integer array are
checked and copied by one msgspec call (:mod:`miglab.visitors.run_types`);
a struct that compiles whole (``takes_plans``) is copied as one tree of dicts
(:mod:`miglab.visitors.object_plans`); anything unusual goes to the
per-member path, which names the member.
"""

from __future__ import annotations

from miglab.limits import LIMITS
from miglab.visitors.base import Visitor
from miglab.visitors.object_plans import charged_state, plain_of, run_dict
from miglab.visitors.run_types import checked_ints, checked_runs

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

    from miglab.visitors.compiled import FieldRun, StructPlan

__all__ = ("ObjectInputVisitor", "ObjectOutputVisitor")

_NOTHING = object()


class ObjectOutputVisitor(Visitor):
    """Builds an object tree from visited values; cannot fail but on bad values."""

    is_input = False
    takes_runs = True
    takes_plans = True

    def __init__(self) -> None:
        super().__init__()
        self._stack: list[Any] = []
        self._root: Any = _NOTHING

    def _put(self, name: str | None, value: Any) -> None:
        if not self._stack:
            self._root = value
            return
        top = self._stack[-1]
        if isinstance(top, list):
            top.append(value)
        else:
            top[name] = value

    def complete(self) -> Any:
        """The tree built so far (the first top-level value visited)."""
        if self._root is _NOTHING:
            raise self.error("nothing was visited")
        return self._root

    def start_struct(self, name: str | None) -> None:
        node: dict[str, Any] = {}
        self._put(name, node)
        self._stack.append(node)
        self._push(name)

    def end_struct(self) -> None:
        self._stack.pop()
        self._pop()

    def start_list(self, name: str | None, length: int | None) -> int:
        if length is None:
            raise self.error("list length is unknown", self.member(name))
        node: list[Any] = []
        self._put(name, node)
        self._stack.append(node)
        self._push(name)
        self._index.append(0)
        return length

    def end_list(self) -> None:
        self._stack.pop()
        self._index.pop()
        self._pop()

    def visit_run(self, run: FieldRun, src: dict[str, Any] | None, values: dict[str, Any]) -> bool:
        if src is None or not self._stack or type(self._stack[-1]) is not dict:
            return False
        out = run_dict(run, src)
        if out is None:
            return False
        self._stack[-1].update(out)
        values.update(out)  # the walk reads counts from these; nothing changes them
        return True

    def visit_struct_run(
        self,
        name: str | None,
        desc_name: str,
        run: FieldRun,
        src: dict[str, Any] | None,
        values: dict[str, Any],
    ) -> bool:
        if src is None:
            return False
        out = run_dict(run, src)
        if out is None:
            return False
        self._put(name, out)
        return True

    def visit_plan(self, name: str | None, plan: StructPlan, state: Any) -> Any:
        if state is None or len(self._path) + plan.depth >= LIMITS.max_depth:
            return None
        out = plain_of(plan, state)
        if out is None:
            return None
        self._put(name, out)
        return state

    def visit_struct_runs(
        self,
        name: str,
        desc_name: str,
        run: FieldRun,
        srcs: list[dict[str, Any]] | None,
        count: int,
    ) -> list[dict[str, Any]] | None:
        if srcs is None or not self._stack:
            return None
        out = checked_runs(run, srcs)
        if out is None:
            return None
        self._put(name, out)
        return srcs

    def type_int(self, name: str | None, value: int | None, size: int, signed: bool) -> int:
        value = self.check_int(name, value, size, signed)
        self._put(name, value)
        return value

    def int_array(
        self, name: str | None, values: list[int] | None, count: int, size: int, signed: bool
    ) -> list[int]:
        if values is None:
            raise self.error("has no value", self.member(name))
        out = checked_ints(values, size, signed)
        if out is None:
            self.check_int_array(name, values, size, signed)  # raises, naming the element
            out = list(values)
        self._put(name, out)
        return values

    def type_bool(self, name: str | None, value: bool | None) -> bool:
        if not isinstance(value, bool):
            raise self.error(f"expected a bool, got {value!r}", self.member(name))
        self._put(name, value)
        return value

    def type_float64(self, name: str | None, value: float | None) -> float:
        if not isinstance(value, float | int) or isinstance(value, bool):
            raise self.error(f"expected a float, got {value!r}", self.member(name))
        self._put(name, float(value))
        return float(value)

    def type_str(self, name: str | None, value: str | None) -> str:
        if not isinstance(value, str):
            raise self.error(f"expected a str, got {value!r}", self.member(name))
        self._put(name, value)
        return value

    def type_buffer(self, name: str | None, value: bytes | None, size: int) -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview) or len(value) != size:
            raise self.error(f"expected {size} bytes, got {value!r:.40}", self.member(name))
        out = bytes(value)
        self._put(name, out)
        return out

    def optional(self, name: str, present: bool) -> bool:
        # Presence is shown by the member being there; nothing else is stored.
        return present

    def start_subsection(self, name: str, version: int, present: bool) -> int | None:
        return version if present else None


class ObjectInputVisitor(Visitor):
    """Reads visited values back out of an object tree, strictly.

    Every struct keeps count of the members read; :meth:`check_struct` (the
    walker calls it before each struct ends) fails naming the members
    nobody read.
    """

    is_input = True
    takes_runs = True
    takes_plans = True

    def __init__(self, tree: Any) -> None:
        super().__init__()
        self._tree = tree
        self._stack: list[Any] = []
        self._seen: list[set[str] | None] = []  # per open struct: the members read

    def _get(self, name: str | None) -> Any:
        if not self._stack:
            return self._tree
        top = self._stack[-1]
        if isinstance(top, list):
            i = self._index[-1]
            if i >= len(top):
                raise self.error(f"only {len(top)} list elements", None)
            return top[i]
        if name not in top:
            raise self.error("is missing", name)
        seen = self._seen[-1]
        if seen is not None:
            seen.add(name)  # type: ignore[arg-type]
        return top[name]

    def _peek(self, name: str | None) -> tuple[Any, Any]:
        """The node being read and its member ``name`` (the current element of a list, the
        whole tree at the top), not yet marked read: a compiled read may still decline it."""
        top = self._stack[-1] if self._stack else None
        if top is None:
            return top, self._tree
        if type(top) is list:
            i = self._index[-1]
            return top, top[i] if i < len(top) else None
        return top, top.get(name)

    def _mark_read(self, top: Any, name: str | None) -> None:
        """Member ``name`` of ``top`` (from :meth:`_peek`) was read, for :meth:`check_struct`."""
        if type(top) is dict:
            seen = self._seen[-1]
            if seen is not None:
                seen.add(name)  # type: ignore[arg-type]

    def start_struct(self, name: str | None) -> None:
        node = self._get(name)
        if not isinstance(node, dict):
            raise self.error(f"expected an object, got {type(node).__name__}", self.member(name))
        self._stack.append(node)
        self._seen.append(set())
        self._push(name)

    def end_struct(self) -> None:
        self._stack.pop()
        self._seen.pop()
        self._pop()

    def check_struct(self, name: str | None) -> None:
        """Members of the current struct that nobody read are an error (``visit_check_struct``)."""
        top = self._stack[-1] if self._stack else None
        seen = self._seen[-1] if self._seen else None
        if not isinstance(top, dict) or seen is None or len(seen) == len(top):
            return
        extra = [k for k in top if k not in seen]
        raise self.error(f"has members nobody reads: {', '.join(map(str, extra))}")

    def visit_run(self, run: FieldRun, src: dict[str, Any] | None, values: dict[str, Any]) -> bool:
        top = self._stack[-1] if self._stack else None
        if type(top) is not dict:
            return False
        out = run_dict(run, top)
        if out is None:
            return False
        values.update(out)
        seen = self._seen[-1]
        if seen is not None:
            seen.update(run.names)
        return True

    def visit_struct_run(
        self,
        name: str | None,
        desc_name: str,
        run: FieldRun,
        src: dict[str, Any] | None,
        values: dict[str, Any],
    ) -> bool:
        top, node = self._peek(name)
        if type(node) is not dict or len(node) != len(run.names):
            return False  # missing, not an object, or with members nobody reads
        out = run_dict(run, node)
        if out is None:
            return False
        self._mark_read(top, name)
        values.update(out)
        return True

    def visit_plan(self, name: str | None, plan: StructPlan, state: Any) -> Any:
        if len(self._path) + plan.depth >= LIMITS.max_depth:
            return None
        top, node = self._peek(name)
        out = charged_state(plan, node)
        if out is None:
            return None
        self._mark_read(top, name)
        return out

    def visit_struct_runs(
        self,
        name: str,
        desc_name: str,
        run: FieldRun,
        srcs: list[dict[str, Any]] | None,
        count: int,
    ) -> list[dict[str, Any]] | None:
        top = self._stack[-1] if self._stack else None
        if type(top) is not dict:
            return None
        node = top.get(name)
        if type(node) is not list or len(node) != count:
            return None
        out = checked_runs(run, node)  # every item a map with the run's members, checked
        if out is None or (out and set(map(len, node)) != {len(run.names)}):
            return None  # or an item with members nobody reads
        seen = self._seen[-1]
        if seen is not None:
            seen.add(name)
        return out

    def start_list(self, name: str | None, length: int | None) -> int:
        node = self._get(name)
        if not isinstance(node, list):
            raise self.error(f"expected a list, got {type(node).__name__}", self.member(name))
        if length is not None and len(node) != length:
            raise self.error(f"has {len(node)} elements, expected {length}", self.member(name))
        self._stack.append(node)
        self._seen.append(None)
        self._push(name)
        self._index.append(0)
        return len(node)

    def end_list(self) -> None:
        self._stack.pop()
        self._seen.pop()
        self._index.pop()
        self._pop()

    def type_int(self, name: str | None, value: int | None, size: int, signed: bool) -> int:
        return self.check_int(name, self._get(name), size, signed)

    def int_array(
        self, name: str | None, values: list[int] | None, count: int, size: int, signed: bool
    ) -> list[int]:
        n = self.start_list(name, count)
        out = checked_ints(self._stack[-1], size, signed)
        if out is None:
            out = [self.check_int(None, self._get_next(i), size, signed) for i in range(n)]
        self.end_list()
        return out

    def _get_next(self, i: int) -> Any:
        self._index[-1] = i
        return self._stack[-1][i]

    def type_bool(self, name: str | None, value: bool | None) -> bool:
        got = self._get(name)
        if not isinstance(got, bool):
            raise self.error(f"expected a bool, got {type(got).__name__}", self.member(name))
        return got

    def type_float64(self, name: str | None, value: float | None) -> float:
        got = self._get(name)
        if not isinstance(got, float | int) or isinstance(got, bool):
            raise self.error(f"expected a number, got {type(got).__name__}", self.member(name))
        return float(got)

    def type_str(self, name: str | None, value: str | None) -> str:
        got = self._get(name)
        if not isinstance(got, str):
            raise self.error(f"expected a string, got {type(got).__name__}", self.member(name))
        return got

    def type_buffer(self, name: str | None, value: bytes | None, size: int) -> bytes:
        got = self._get(name)
        if not isinstance(got, bytes | bytearray | memoryview):
            raise self.error(f"expected bytes, got {type(got).__name__}", self.member(name))
        if len(got) != size:
            raise self.error(f"has {len(got)} bytes, expected {size}", self.member(name))
        return bytes(got)

    def optional(self, name: str, present: bool) -> bool:
        top = self._stack[-1] if self._stack else None
        return isinstance(top, dict) and name in top

    def start_subsection(self, name: str, version: int, present: bool) -> int | None:
        return version if self.optional(name, present) else None
