"""Rebuild vmdesc device entries from device states.

The vmdesc trailer describes the device sections actually written (QEMU-FORMAT.md 1.8), and
miglab's own reader decodes device sections with it.  When a transform renames, adds or drops a
field or subsection, the section's vmdesc entry must change with it, or the stream no longer
reads back.  :func:`vmdesc_entry` writes the entry a :class:`~miglab.vmstate.state.VMState`
implies, with :class:`VmdescVisitor` on the one walk (QEMU writes it inside
``vmstate_save_state`` the same way): field objects in wire order with ``name``, ``array_len``
or ``index`` (arrays read element by element, and lone ``index`` entries, which the field
remembers), ``type``, ``struct`` and ``size`` (bytes written for one element: the visitor is a
sizing visitor), then the subsections sent.  Runs of fixed-size fields are taken at once, their
objects following from the description alone.  For an unedited state read from a stream it
reproduces QEMU's entry, key order included.
A section of a legacy handler that miglab decodes (``slirp``) gets QEMU's
``vmstate_save_old_style`` entry instead: its size and one ``data`` buffer.
"""

from __future__ import annotations

from miglab.stream.model import Section, Stream
from miglab.stream.reader import LEGACY_SECTIONS
from miglab.vmstate.description import VMStateField
from miglab.vmstate.sizing import SizingVisitor, wire_size
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

    from miglab.visitors.compiled import FieldRun

__all__ = ("VmdescVisitor", "refresh_vmdesc", "vmdesc_entry", "vmdesc_struct")


def vmdesc_entry(section: Section) -> dict[str, Any]:
    """The vmdesc device object for a FULL section with a decoded payload."""
    state = section.payload
    if not isinstance(state, VMState):
        raise TypeError(f"section {section.name!r} has no decoded state")
    if section.name in LEGACY_SECTIONS:
        size = wire_size(state)
        data = {"name": "data", "size": size, "type": "buffer"}
        return {
            "name": section.name,
            "instance_id": section.instance_id,
            "size": size,
            "fields": [data],
        }
    return {"name": section.name, "instance_id": section.instance_id, **vmdesc_struct(state)}


def vmdesc_struct(state: VMState) -> dict[str, Any]:
    """``{vmsd_name, version, fields[, subsections]}`` for one state (device, struct or subsection)."""
    v = VmdescVisitor()
    visit_vmstate(v, state.desc, state)
    assert v.entry is not None
    return v.entry


def refresh_vmdesc(stream: Stream, sections: list[Section]) -> None:
    """Replace the vmdesc entries of ``sections`` in ``stream`` (matched by name and instance),
    and its ``configuration`` entry (QEMU >= 9.2 writes one) from the configuration block:
    a machine change alters the name buffer's size."""
    if stream.vmdesc is None:
        return
    if "configuration" in stream.vmdesc and stream.configuration is not None:
        stream.vmdesc["configuration"] = vmdesc_struct(stream.configuration)
    by_key = {(s.name, s.instance_id): s for s in sections}
    devices = stream.vmdesc["devices"]
    for i, dev in enumerate(devices):
        key = (dev.get("name"), dev.get("instance_id"))
        if key in by_key:
            devices[i] = vmdesc_entry(by_key[key])


def _head(field: VMStateField) -> dict[str, Any]:
    """A field object's first keys: its name, and the ``index`` of a lone vmdesc ``index``
    entry (such a field is named ``name[index]``)."""
    name = field.name.split("#", 1)[0] if "#" in field.name else field.name
    if field.index is not None:
        return {"name": name.removesuffix(f"[{field.index}]"), "index": field.index}
    return {"name": name}


class _Open:
    """The field being visited in one open struct, until its vmdesc object is complete."""

    __slots__ = ("count", "field", "first", "head")

    def __init__(self, field: VMStateField) -> None:
        self.field = field
        self.head = _head(field)
        self.count: int | None = None  # elements, for a list
        self.first: dict[str, Any] | None = None  # what the first element says (struct, size)


class VmdescVisitor(SizingVisitor):
    """An output visitor on the one walk that writes a state's vmdesc object, as QEMU's
    ``vmstate_save_state`` writes it beside the bytes: per field its name, ``array_len``
    or ``index``, type and the wire size of one element (counted by the sizing visitor it
    is), nested structs and subsections with their description's name and version.

    After the walk, :attr:`entry` is ``{vmsd_name, version, fields[, subsections]}``.
    """

    takes_runs = True
    describes = True

    def __init__(self) -> None:
        super().__init__(leaves=False)
        self.entry: dict[str, Any] | None = None
        self._next: dict[str, Any] | None = None  # the struct the walk is about to start
        self._subsection = False
        # per open struct: its object, where it started, whether it is a subsection, its field
        self._open: list[tuple[dict[str, Any], int, bool]] = []
        self._fields: list[_Open | None] = []

    # --- what the walk tells ---------------------------------------------------
    def describe_struct(self, desc: Any, version: int) -> None:
        self._next = {"vmsd_name": desc.name, "version": version, "fields": []}

    def describe_field(self, field: Any) -> None:
        super().describe_field(field)
        self._fields[-1] = _Open(field)

    # --- runs: a fixed-size field's object follows from its description -------------
    def visit_run(self, run: FieldRun, src: dict[str, Any] | None, values: dict[str, Any]) -> bool:
        if src is None or not _lengths_fit(run, src):
            return False
        if not super().visit_run(run, src, values):
            return False
        self._open[-1][0]["fields"] += _run_objects(run)
        return True

    def visit_struct_run(
        self,
        name: str | None,
        desc_name: str,
        run: FieldRun,
        src: dict[str, Any] | None,
        values: dict[str, Any],
    ) -> bool:
        if src is None or not _lengths_fit(run, src):
            return False
        self.start_struct(name)
        SizingVisitor.visit_run(self, run, src, values)  # takes any run whose values are there
        self._open[-1][0]["fields"] += _run_objects(run)
        self.end_struct()
        return True

    def visit_struct_runs(
        self,
        name: str,
        desc_name: str,
        run: FieldRun,
        srcs: list[dict[str, Any]] | None,
        count: int,
    ) -> list[dict[str, Any]] | None:
        cur = self._fields[-1]
        if srcs is None or cur is None or not all(_lengths_fit(run, src) for src in srcs):
            return None
        struct = cur.field.struct
        assert struct is not None and struct.name == desc_name
        if super().visit_struct_runs(name, desc_name, run, srcs, count) is None:
            return None
        inner = {
            "vmsd_name": desc_name,
            "version": struct.version_id,
            "fields": _run_objects(run),
        }
        f = cur.field
        nested = {**inner} if f.info == "tmp" else {"struct": inner}
        self._emit(
            {**cur.head, "array_len": len(srcs), "type": f.info, **nested, "size": run.struct.size}
        )
        return srcs

    # --- objects ------------------------------------------------------------------
    def _element(self, what: dict[str, Any]) -> None:
        """One element (or the single value) of the current field is visited: ``what`` it
        says (``{"size": n}``, or a nested struct's object and size)."""
        cur = self._fields[-1]
        assert cur is not None
        f = cur.field
        if cur.count is None:
            self._emit({**cur.head, "type": f.info, **what})
        elif f.elements is not None:
            i = self._index[-1]
            self._emit({"name": cur.head["name"], "index": i, "type": f.info, **what})
        elif cur.first is None:
            cur.first = what

    def _emit(self, obj: dict[str, Any]) -> None:
        self._open[-1][0]["fields"].append(obj)

    def _scalar(self, start: int) -> None:
        if self._fields and self._fields[-1] is not None:
            self._element({"size": self.pos - start})

    # --- the contract -------------------------------------------------------------
    def start_struct(self, name: str | None) -> None:
        assert self._next is not None
        self._open.append((self._next, self.pos, self._subsection))
        self._next, self._subsection = None, False
        self._fields.append(None)
        super().start_struct(name)

    def end_struct(self) -> None:
        super().end_struct()
        obj, start, subsection = self._open.pop()
        self._fields.pop()
        if not self._open:
            self.entry = obj
        elif subsection:
            self._open[-1][0].setdefault("subsections", []).append(obj)
        else:
            cur = self._fields[-1]
            assert cur is not None
            size = self.pos - start
            # VMSTATE_WITH_TMP: the nested description sits on the field itself
            self._element(
                {**obj, "size": size} if cur.field.info == "tmp" else {"struct": obj, "size": size}
            )

    def start_list(self, name: str | None, length: int | None) -> int:
        n = super().start_list(name, length)
        cur = self._fields[-1]
        assert cur is not None
        cur.count = n
        return n

    def end_list(self) -> None:
        super().end_list()
        cur = self._fields[-1]
        assert cur is not None
        if cur.field.elements is None:
            first = cur.first if cur.first is not None else {"size": cur.field.size}
            self._emit({**cur.head, "array_len": cur.count, "type": cur.field.info, **first})

    def start_subsection(self, name: str, version: int, present: bool) -> int | None:
        got = super().start_subsection(name, version, present)
        self._subsection = got is not None
        return got

    def type_int(self, name: str | None, value: int | None, size: int, signed: bool) -> int:
        start = self.pos
        out = super().type_int(name, value, size, signed)
        self._scalar(start)
        return out

    def int_array(
        self, name: str | None, values: list[int] | None, count: int, size: int, signed: bool
    ) -> list[int]:
        out = super().int_array(name, values, count, size, signed)
        cur = self._fields[-1]
        assert cur is not None
        self._emit({**cur.head, "array_len": count, "type": cur.field.info, "size": size})
        return out

    def type_bool(self, name: str | None, value: bool | None) -> bool:
        start = self.pos
        out = super().type_bool(name, value)
        self._scalar(start)
        return out

    def type_float64(self, name: str | None, value: float | None) -> float:
        start = self.pos
        out = super().type_float64(name, value)
        self._scalar(start)
        return out

    def type_str(self, name: str | None, value: str | None) -> str:
        start = self.pos
        out = super().type_str(name, value)
        self._scalar(start)
        return out

    def type_buffer(self, name: str | None, value: bytes | None, size: int) -> bytes:
        start = self.pos
        out = super().type_buffer(name, value, size)
        self._scalar(start)
        return out


def _lengths_fit(run: FieldRun, src: dict[str, Any]) -> bool:
    """Whether every array and buffer of the run has its description's length (else the
    per-field path writes the object of the length the value has)."""
    try:
        vals = run.take(src)
    except KeyError:
        return False
    return all(len(vals[i]) == n for i, n in run.sized)


# Run -> its fields' objects, as runs are compiled once per description (layout.py's cache).
_RUN_OBJECTS: dict[Any, tuple[dict[str, Any], ...]] = {}


def _run_objects(run: FieldRun) -> list[dict[str, Any]]:
    """The vmdesc objects of a run's fields (new dicts: a vmdesc is edited in place); they
    follow from the description alone."""
    objs = _RUN_OBJECTS.get(run)
    if objs is None:
        out = []
        for f in run.fields:
            obj = _head(f)
            if f.num is not None:
                obj["array_len"] = f.num
            obj["type"] = f.info
            obj["size"] = f.size
            out.append(obj)
        if len(_RUN_OBJECTS) >= 4096:
            _RUN_OBJECTS.clear()
        objs = _RUN_OBJECTS[run] = tuple(out)
    return [obj.copy() for obj in objs]
