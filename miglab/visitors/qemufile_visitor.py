"""Visitors over a QEMUFile: exactly QEMU's bytes, big-endian, no tags.

A u32 is 4 bytes, a bool 1 byte, a string a counted string, a subsection
``0x05, counted name, be32 version``.  Nothing on the wire names a member,
so the input visitor must be driven by the same walk that wrote the bytes.

Each visitor is registered against its QEMUFile, so legacy code that only
has the ``QEMUFile`` can find it with :func:`visitor_for` while a handler
is being converted.
"""

from __future__ import annotations

import struct

from miglab.errors import MigrationFormatError, VisitorError
from miglab.visitors.base import RUN_BOOL, RUN_SCALAR, Visitor
from miglab.visitors.qemufile import QEMUFileReader, QEMUFileWriter
from miglab.wire import SectionType

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

    from miglab.visitors.compiled import FieldRun

__all__ = ("QEMUFileInputVisitor", "QEMUFileOutputVisitor", "visitor_for")

_SUBSECTION = int(SectionType.SUBSECTION)  # QEMU_VM_SUBSECTION, a plain int: compared per field

_INT_CODES = {1: "B", 2: "H", 4: "I", 8: "Q"}
_ARRAY_STRUCTS: dict[tuple[int, int, bool], struct.Struct] = {}


def _array_struct(count: int, size: int, signed: bool) -> struct.Struct:
    key = (count, size, signed)
    fmt = _ARRAY_STRUCTS.get(key)
    if fmt is None:
        code = _INT_CODES[size]
        fmt = struct.Struct(f">{count}{code.lower() if signed else code}")
        if len(_ARRAY_STRUCTS) < 4096:
            _ARRAY_STRUCTS[key] = fmt
    return fmt


def visitor_for(f: QEMUFileReader | QEMUFileWriter) -> Visitor:
    """The visitor registered for QEMUFile ``f`` (the most recent one made on it)."""
    # Kept on the file itself (slot ``_visitor``): a visitor holds its file, and a
    # registry keyed weakly by file with the visitor as value would keep every
    # file, and the input it views, alive for good.
    visitor: Visitor | None = getattr(f, "_visitor", None)
    if visitor is None:
        raise VisitorError("no visitor is registered for this QEMUFile")
    return visitor


class _QEMUFileVisitor(Visitor):
    """What both QEMUFile visitors share: structs and lists leave no trace on the wire.

    QEMU's stream has no struct or list markers; a list's length always comes
    from the description (a fixed count or an earlier field), never the input.
    Runs of fixed-size fields are one big-endian struct on the wire, so both
    visitors take them whole (``takes_runs``).
    """

    takes_runs = True

    def visit_struct_run(
        self,
        name: str | None,
        desc_name: str,
        run: FieldRun,
        src: dict[str, Any] | None,
        values: dict[str, Any],
    ) -> bool:
        # Structs leave no trace on the wire: the struct is its run.
        if not self.visit_run(run, src, values):
            return False
        if self.is_input and desc_name:
            # a subsection header may follow that QEMU would take as this struct's
            self._push(name)
            self.check_struct(desc_name)
            self._pop()
        return True

    def start_struct(self, name: str | None) -> None:
        self._push(name)

    def end_struct(self) -> None:
        self._pop()

    def start_list(self, name: str | None, length: int | None) -> int:
        if length is None:
            raise self.error("list length must come from the description", self.member(name))
        self._push(name)
        self._index.append(0)
        return length

    def end_list(self) -> None:
        self._index.pop()
        self._pop()


class QEMUFileOutputVisitor(_QEMUFileVisitor):
    """Writes visited values to a :class:`QEMUFileWriter` as QEMU would."""

    is_input = False

    def __init__(self, f: QEMUFileWriter) -> None:
        super().__init__()
        self.f = f
        f._visitor = self

    def offset(self) -> int | None:
        return self.f.pos

    def type_int(self, name: str | None, value: int | None, size: int, signed: bool) -> int:
        value = self.check_int(name, value, size, signed)
        self.f.write(value.to_bytes(size, "big", signed=signed))
        return value

    def int_array(
        self, name: str | None, values: list[int] | None, count: int, size: int, signed: bool
    ) -> list[int]:
        if values is None:
            raise self.error("has no value", self.member(name))
        try:
            self.f.write(_array_struct(len(values), size, signed).pack(*values))
        except struct.error:
            self.check_int_array(name, values, size, signed)  # names the offending element
            raise
        return values

    def type_bool(self, name: str | None, value: bool | None) -> bool:
        if not isinstance(value, bool):
            raise self.error(f"expected a bool, got {value!r}", self.member(name))
        self.f.u8(1 if value else 0)
        return value

    def type_float64(self, name: str | None, value: float | None) -> float:
        if not isinstance(value, float | int) or isinstance(value, bool):
            raise self.error(f"expected a float, got {value!r}", self.member(name))
        self.f.write(struct.pack(">d", value))
        return value

    def type_str(self, name: str | None, value: str | None) -> str:
        if not isinstance(value, str):
            raise self.error(f"expected a str, got {value!r}", self.member(name))
        raw = value.encode()
        if len(raw) > 255:
            raise self.error(f"string of {len(raw)} bytes exceeds 255", self.member(name))
        self.f.counted_string(raw)
        return value

    def type_buffer(self, name: str | None, value: bytes | None, size: int) -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise self.error(f"expected bytes, got {type(value).__name__}", self.member(name))
        if len(value) != size:
            raise self.error(f"buffer has {len(value)} bytes, expected {size}", self.member(name))
        self.f.write(value)
        return bytes(value)

    def visit_run(self, run: FieldRun, src: dict[str, Any] | None, values: dict[str, Any]) -> bool:
        """Write ``run`` from ``src`` with one pack; False, nothing written, if a value is odd.

        A value missing, of another type than the field's usual one, of the
        wrong length or out of range leaves the run to the per-field path,
        which writes it or raises the precise error.
        """
        if src is None:
            return False
        try:
            vals = run.take(src)
        except KeyError:
            return False
        if tuple(map(type, vals)) != run.types:
            return False
        for i, n in run.sized:
            if len(vals[i]) != n:
                return False
        flat: Any
        if run.plain:
            flat = vals
        else:
            flat = []
            for v in vals:
                if type(v) is list:
                    flat.extend(v)
                else:
                    flat.append(v)
        try:
            data = run.struct.pack(*flat)
        except struct.error:
            return False
        self.f.write(data)
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
        pack, take, types = run.struct.pack, run.take, run.types
        parts = []
        try:
            for src in srcs:
                vals = take(src)
                if tuple(map(type, vals)) != types:
                    return None
                for i, n in run.sized:
                    if len(vals[i]) != n:
                        return None
                if run.plain:
                    parts.append(pack(*vals))
                else:
                    flat: list[Any] = []
                    for x in vals:
                        if type(x) is list:
                            flat.extend(x)
                        else:
                            flat.append(x)
                    parts.append(pack(*flat))
        except (KeyError, struct.error):
            return None
        self.f.write(b"".join(parts))
        return srcs

    def optional(self, name: str, present: bool) -> bool:
        # QEMU carries optional elements as a one-byte marker (as for qtailq).
        self.f.u8(1 if present else 0)
        return present

    def start_subsection(self, name: str, version: int, present: bool) -> int | None:
        if not present:
            return None
        self.f.u8(_SUBSECTION)
        self.f.counted_string(name.encode())
        self.f.be32(version)
        return version


class QEMUFileInputVisitor(_QEMUFileVisitor):
    """Reads values from a :class:`QEMUFileReader`; errors carry path and offset."""

    is_input = True

    def __init__(self, f: QEMUFileReader) -> None:
        super().__init__()
        self.f = f
        f._visitor = self

    def offset(self) -> int | None:
        return self.f.pos

    def _fail(self, exc: MigrationFormatError, name: str | None) -> MigrationFormatError:
        return type(exc)(exc.message, offset=exc.offset, path=self.path(self.member(name)))

    def type_int(self, name: str | None, value: int | None, size: int, signed: bool) -> int:
        f = self.f
        if f.pos + size > f.end:
            try:
                f.need(size, f"a {size}-byte integer")
            except MigrationFormatError as exc:
                raise self._fail(exc, name) from None
        out = int.from_bytes(f.view[f.pos : f.pos + size], "big", signed=signed)
        f.pos += size
        return out

    def int_array(
        self, name: str | None, values: list[int] | None, count: int, size: int, signed: bool
    ) -> list[int]:
        try:
            self.f.need(count * size, f"{count} integers of {size} bytes")
            return list(self.f.unpack(_array_struct(count, size, signed), "an integer array"))
        except MigrationFormatError as exc:
            raise self._fail(exc, name) from None

    def type_bool(self, name: str | None, value: bool | None) -> bool:
        try:
            byte = self.f.u8("a bool")
        except MigrationFormatError as exc:
            raise self._fail(exc, name) from None
        if byte > 1:
            raise MigrationFormatError(
                f"bool byte is {byte}, expected 0 or 1",
                offset=self.f.pos - 1,
                path=self.path(self.member(name)),
            )
        return byte == 1

    def type_float64(self, name: str | None, value: float | None) -> float:
        try:
            return self.f.unpack(_DOUBLE, "a float64")[0]
        except MigrationFormatError as exc:
            raise self._fail(exc, name) from None

    def type_str(self, name: str | None, value: str | None) -> str:
        start = self.f.pos
        try:
            raw = self.f.counted_string()
            return raw.decode()
        except MigrationFormatError as exc:
            raise self._fail(exc, name) from None
        except UnicodeDecodeError:
            raise MigrationFormatError(
                "string is not UTF-8", offset=start, path=self.path(self.member(name))
            ) from None

    def type_buffer(self, name: str | None, value: bytes | None, size: int) -> bytes:
        try:
            return self.f.read_bytes(size, f"a buffer of {size} bytes")
        except MigrationFormatError as exc:
            raise self._fail(exc, name) from None

    def visit_run(self, run: FieldRun, src: dict[str, Any] | None, values: dict[str, Any]) -> bool:
        """Read ``run`` with one unpack; False (nothing read) when the per-field path must decide."""
        f = self.f
        pos = f.pos
        size = run.struct.size
        if pos + size > f.end:
            return False
        items = run.struct.unpack_from(f.view, pos)
        for i in run.bools:
            if items[i] > 1:
                return False
        if run.plain:
            values.update(zip(run.names, items, strict=True))
        else:
            for name, start, stop, conv in run.slots:
                if conv == RUN_SCALAR:
                    values[name] = items[start]
                elif conv == RUN_BOOL:
                    values[name] = items[start] == 1
                else:
                    values[name] = list(items[start:stop])
        f.pos = pos + size
        return True

    def visit_struct_runs(
        self,
        name: str,
        desc_name: str,
        run: FieldRun,
        srcs: list[dict[str, Any]] | None,
        count: int,
    ) -> list[dict[str, Any]] | None:
        f = self.f
        size = run.struct.size
        pos = f.pos
        end = pos + size * count
        if end > f.end or size == 0:
            return None
        view = f.view
        if desc_name:
            # after any element, a subsection header may follow that QEMU would
            # take as that element's: leave such lists to the element path
            prefix = desc_name + "/"
            for at in range(pos + size, min(end, f.end - 1) + 1, size):
                if view[at] == _SUBSECTION and _subsection_at(view, at, f.end, prefix):
                    return None
        items = list(run.struct.iter_unpack(view[pos:end]))
        bools = run.bools
        if bools:
            for it in items:
                for i in bools:
                    if it[i] > 1:
                        return None
        names = run.names
        if run.plain:
            out = [dict(zip(names, it, strict=True)) for it in items]
        else:
            out = []
            for it in items:
                d: dict[str, Any] = {}
                for n, start, stop, conv in run.slots:
                    if conv == RUN_SCALAR:
                        d[n] = it[start]
                    elif conv == RUN_BOOL:
                        d[n] = it[start] == 1
                    else:
                        d[n] = list(it[start:stop])
                out.append(d)
        f.pos = end
        return out

    def check_struct(self, name: str | None) -> None:
        """A subsection of this struct that nobody claimed is an error, as in QEMU."""
        stray = self.pending_subsection(name + "/") if name else None
        if stray is not None:
            raise MigrationFormatError(
                f"unknown or out-of-order subsection {stray!r} for {name!r}",
                offset=self.f.pos,
                path=self.path(),
            )

    def optional(self, name: str, present: bool) -> bool:
        return self.type_bool(name, None)

    def start_subsection(self, name: str, version: int, present: bool) -> int | None:
        f = self.f
        if f.peek_u8() != _SUBSECTION:
            return None
        raw = name.encode()
        n = len(raw)
        start = f.pos
        if (
            f.pos + 2 + n > f.end
            or f.view[f.pos + 1] != n
            or f.view[f.pos + 2 : f.pos + 2 + n] != raw
        ):
            return None
        f.pos += 2 + n
        try:
            return f.be32(f"the version of subsection {name}")
        except MigrationFormatError as exc:
            f.pos = start
            raise self._fail(exc, name) from None

    def pending_subsection(self, prefix: str) -> str | None:
        """Name of a subsection starting here whose name begins with ``prefix``.

        QEMU's loader treats such a subsection it does not know as an error,
        and any other byte as belonging to the caller (vmstate_subsection_load).
        """
        f = self.f
        if f.peek_u8() != _SUBSECTION:
            return None
        return _subsection_at(f.view, f.pos, f.end, prefix)


def _subsection_at(view: memoryview, at: int, end: int, prefix: str) -> str | None:
    """The name of the subsection header at ``at`` if it begins with ``prefix``."""
    if at + 2 > end:
        return None
    n = view[at + 1]
    raw = bytes(view[at + 2 : min(at + 2 + n, end)])
    name = raw.decode("utf-8", "replace")
    return name if len(raw) == n and name.startswith(prefix) else None


_DOUBLE = struct.Struct(">d")
