"""Visitors over an in-memory object tree (QEMU's QObject visitors).

The tree is plain Python: a struct is a ``dict`` (members in visit order,
subsections under their full name such as ``"fw_cfg/dma"``), a list is a
``list``, integers/bools/floats/strings are themselves and buffers are
``bytes``.  :class:`ObjectOutputVisitor` builds such a tree and returns it
from :meth:`~ObjectOutputVisitor.complete`; :class:`ObjectInputVisitor`
reads one back, strictly: a missing member, a wrong type or an integer that
does not fit is a :class:`~miglab.errors.VisitorError` naming the member.
"""

from __future__ import annotations

from typing import Any

from miglab.visitors.base import Visitor

__all__ = ("ObjectInputVisitor", "ObjectOutputVisitor")

_NOTHING = object()


class ObjectOutputVisitor(Visitor):
    """Builds an object tree from visited values; cannot fail but on bad values."""

    is_input = False

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

    def type_int(self, name: str | None, value: int | None, size: int, signed: bool) -> int:
        value = self.check_int(name, value, size, signed)
        self._put(name, value)
        return value

    def int_array(
        self, name: str | None, values: list[int] | None, count: int, size: int, signed: bool
    ) -> list[int]:
        if values is None:
            raise self.error("has no value", self.member(name))
        self.check_int_array(name, values, size, signed)
        self._put(name, list(values))
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
    """Reads visited values back out of an object tree, strictly."""

    is_input = True

    def __init__(self, tree: Any) -> None:
        super().__init__()
        self._tree = tree
        self._stack: list[Any] = []

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
        return top[name]

    def start_struct(self, name: str | None) -> None:
        node = self._get(name)
        if not isinstance(node, dict):
            raise self.error(f"expected an object, got {type(node).__name__}", self.member(name))
        self._stack.append(node)
        self._push(name)

    def end_struct(self) -> None:
        self._stack.pop()
        self._pop()

    def start_list(self, name: str | None, length: int | None) -> int:
        node = self._get(name)
        if not isinstance(node, list):
            raise self.error(f"expected a list, got {type(node).__name__}", self.member(name))
        if length is not None and len(node) != length:
            raise self.error(f"has {len(node)} elements, expected {length}", self.member(name))
        self._stack.append(node)
        self._push(name)
        self._index.append(0)
        return len(node)

    def end_list(self) -> None:
        self._stack.pop()
        self._index.pop()
        self._pop()

    def type_int(self, name: str | None, value: int | None, size: int, signed: bool) -> int:
        return self.check_int(name, self._get(name), size, signed)

    def int_array(
        self, name: str | None, values: list[int] | None, count: int, size: int, signed: bool
    ) -> list[int]:
        n = self.start_list(name, count)
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
