"""VMState descriptions: what a device's state looks like on the wire.

A :class:`VMStateDescription` mirrors QEMU's ``VMStateDescription``: a name,
a version, an ordered list of :class:`VMStateField` and optional
subsections.  One description drives both directions through any visitor
(:func:`miglab.vmstate.walk.visit_vmstate`).  Descriptions are built by hand
(:func:`field` and :func:`describe`), from a stream's vmdesc trailer
(:mod:`miglab.vmstate.from_vmdesc`) or from a ``-dump-vmstate`` schema
(:mod:`miglab.vmstate.from_schema`).

Field kinds, derived from QEMU's VMStateInfo type names (see ``INFO_TYPES``):

``int``      integers, incl. ``"int32 equal"``, ``"int32 le"``, ``timer``
``bool``     one byte, 0 or 1
``float``    ``float64``
``bytes``    ``buffer``, ``unused_buffer``, ``bitmap`` and any type miglab
             cannot decode (kept as an opaque span of ``size`` bytes)
``str``      ``capability`` (a counted string)
``null``     ``nullptr`` (one byte 0x30)
``struct``   a nested description (``struct``, ``vstruct``, ``tmp``)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field

from miglab.errors import DescriptionError

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

__all__ = (
    "INFO_TYPES",
    "Check",
    "FieldKind",
    "VMStateDescription",
    "VMStateField",
    "describe",
    "field",
    "unique_name",
)

FieldKind = str
Check = str  # "equal" (value must equal the destination's) or "le" (0 <= loaded <= current)

# VMStateInfo name -> (kind, size, signed, check); data, not code (QEMU's vmstate-types.c).
INFO_TYPES: Mapping[str, tuple[FieldKind, int, bool, Check | None]] = {
    "bool": ("bool", 1, False, None),
    "int8": ("int", 1, True, None),
    "int16": ("int", 2, True, None),
    "int32": ("int", 4, True, None),
    "int64": ("int", 8, True, None),
    "uint8": ("int", 1, False, None),
    "uint16": ("int", 2, False, None),
    "uint32": ("int", 4, False, None),
    "uint64": ("int", 8, False, None),
    "int32 equal": ("int", 4, True, "equal"),
    "uint32 equal": ("int", 4, False, "equal"),
    "int64 equal": ("int", 8, False, "equal"),  # (sic) QEMU's name for uint64 equal
    "uint8 equal": ("int", 1, False, "equal"),
    "uint16 equal": ("int", 2, False, "equal"),
    "int32 le": ("int", 4, True, "le"),  # "le" = less-or-equal check, not little-endian
    "timer": ("int", 8, True, None),  # expiry in ns; -1 = not armed
    "CPU_Double_U": ("int", 8, False, None),
    "float64": ("float", 8, False, None),
    "buffer": ("bytes", 0, False, None),
    "unused_buffer": ("bytes", 0, False, None),
    "bitmap": ("bytes", 0, False, None),
    "capability": ("str", 0, False, None),
    "nullptr": ("null", 1, False, None),
    "struct": ("struct", 0, False, None),
    "vstruct": ("struct", 0, False, None),
    "tmp": ("struct", 0, False, None),
}


@dataclass(frozen=True, slots=True)
class VMStateField:
    """One member of a description (QEMU's ``VMStateField``).

    Attributes:
        name: member name, unique within its description.
        info: QEMU's VMStateInfo type name (``"uint32"``, ``"pci config"``...).
        kind: how miglab carries the value (see module docstring).
        size: bytes of one element on the wire (0 for structs and strings).
        signed: for ``int`` kind, whether the integer is signed.
        check: ``"equal"``/``"le"`` for QEMU's checked integer types.
        num: fixed element count of an array; None for a single element.
        num_field: name of an earlier field whose value is the element count
            (``VMS_VARRAY_*``); multiplied by ``num`` when both are set.
        size_field: name of an earlier field whose value is the byte size of a
            buffer (``VMS_VBUFFER``).
        struct: the nested description for ``struct`` kind.
        elements: per-element nested descriptions, for arrays whose elements
            were described one by one (vmdesc ``index`` entries).
        version_id: the field is on the wire only for stream versions >= this.
        index: for a field read from a lone vmdesc ``index`` entry (one element of an
            array QEMU described element by element), that index; the field is named
            ``name[index]``, and the vmdesc entry is rebuilt from both.
        exists: QEMU's ``field_exists`` predicate, called with the values
            decoded so far and the stream version.
    """

    name: str
    info: str
    kind: FieldKind
    size: int = 0
    signed: bool = False
    check: Check | None = None
    num: int | None = None
    num_field: str | None = None
    size_field: str | None = None
    struct: VMStateDescription | None = None
    elements: tuple[VMStateDescription, ...] | None = None
    version_id: int = 0
    index: int | None = None
    exists: Callable[[Mapping[str, Any], int], bool] | None = dc_field(default=None, compare=False)

    @property
    def is_array(self) -> bool:
        """True when the field carries a list of elements."""
        return self.num is not None or self.num_field is not None or self.elements is not None


@dataclass(frozen=True, slots=True)
class VMStateDescription:
    """A device's state layout (QEMU's ``VMStateDescription``).

    Attributes:
        name: the vmsd name (``"e1000"``, ``"fw_cfg/dma"`` for a subsection).
        version_id: the version this description writes.
        minimum_version_id: the oldest stream version it can read.
        fields: members in wire order.
        subsections: optional trailing parts, in the order they are sent.
        needed: QEMU's ``.needed`` of a subsection, called with the parent's
            values; the output side's decision whether to send it (see
            :func:`miglab.devices.state.state_from_values`).  A
            :class:`~miglab.vmstate.state.VMState` already says which
            subsections it has, so the walker does not call it.
    """

    name: str
    version_id: int = 1
    minimum_version_id: int = 0
    fields: tuple[VMStateField, ...] = ()
    subsections: tuple[VMStateDescription, ...] = ()
    needed: Callable[[Mapping[str, Any]], bool] | None = dc_field(default=None, compare=False)

    def field_named(self, name: str) -> VMStateField:
        """The field called ``name``; DescriptionError if there is none."""
        for f in self.fields:
            if f.name == name:
                return f
        raise DescriptionError(f"{self.name} has no field {name!r}")

    def subsection_named(self, name: str) -> VMStateDescription | None:
        """The subsection called ``name``, or None."""
        for s in self.subsections:
            if s.name == name:
                return s
        return None


def unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``name#1``, ``name#2``... if taken; records the result in ``used``.

    vmdesc and schema dumps may repeat a field name within one description;
    miglab's field names must be unique, so repeats get a ``#k`` suffix.
    """
    out, k = name, 1
    while out in used:
        out = f"{name}#{k}"
        k += 1
    used.add(out)
    return out


def field(
    name: str,
    info: str,
    *,
    size: int | None = None,
    num: int | None = None,
    num_field: str | None = None,
    size_field: str | None = None,
    struct: VMStateDescription | None = None,
    version_id: int = 0,
    exists: Callable[[Mapping[str, Any], int], bool] | None = None,
) -> VMStateField:
    """Build a field from a VMStateInfo type name, as QEMU's VMSTATE_* macros do.

    Example:
        ``field("mac_reg", "uint32", num=0x8000)`` is ``VMSTATE_UINT32_ARRAY``;
        ``field("name", "buffer", size_field="len")`` is ``VMSTATE_VBUFFER_UINT32``.
    Unknown type names become opaque buffers of ``size`` bytes.
    """
    kind, natural, signed, check = INFO_TYPES.get(info, ("bytes", 0, False, None))
    if kind in ("int", "bool", "float", "null"):
        if size is not None and size != natural:
            kind, signed, check = "bytes", False, None  # a type name we know with a size we don't
        else:
            size = natural
    if kind == "struct" and struct is None:
        raise DescriptionError(f"field {name!r} of type {info!r} needs a nested description")
    if kind == "bytes" and size is None and size_field is None:
        raise DescriptionError(f"buffer field {name!r} needs a size or a size_field")
    return VMStateField(
        name=name,
        info=info,
        kind=kind,
        size=size or 0,
        signed=signed,
        check=check,
        num=num,
        num_field=num_field,
        size_field=size_field,
        struct=struct,
        version_id=version_id,
        exists=exists,
    )


def describe(
    name: str,
    fields: Sequence[VMStateField],
    *,
    version_id: int = 1,
    minimum_version_id: int = 0,
    subsections: Sequence[VMStateDescription] = (),
    needed: Callable[[Mapping[str, Any]], bool] | None = None,
) -> VMStateDescription:
    """Build a description, checking that field names are unique and counts refer back."""
    seen: set[str] = set()
    for f in fields:
        if f.name in seen:
            raise DescriptionError(f"{name}: duplicate field {f.name!r}")
        for ref in (f.num_field, f.size_field):
            if ref is not None and ref not in seen:
                raise DescriptionError(f"{name}.{f.name}: count field {ref!r} must come earlier")
        seen.add(f.name)
    return VMStateDescription(
        name=name,
        version_id=version_id,
        minimum_version_id=minimum_version_id,
        fields=tuple(fields),
        subsections=tuple(subsections),
        needed=needed,
    )
