"""ASN.1 types as data: asn1tools' parsed form, its text, and the fixed types of miglab's modules.

A type is kept in the form ``asn1tools.parse_string`` gives (``{"type":
"INTEGER", "restricted-to": [(0, 255)]}``), so a module compiles with
``asn1tools.compile_dict`` without parsing text -- pyparsing takes seconds on
a module of 60 descriptions -- and :func:`type_text` writes the same type as
ASN.1 notation, for :class:`Module.text` (what other ASN.1 tools read, and
what a schema id hashes).  A test checks that parsing the text gives the
types back.

Two sets of types are fixed: the record layer of every stream module
(:data:`RECORD_TYPES`: ``Stream``, ``Section``, ``Ram`` runs, ``Command``;
``State``, one alternative per description, closes it) and the description
table (:data:`DESCRIPTION_TYPES`, module ``MiglabDescriptions``).
"""

from __future__ import annotations

import copy
from typing import Any

from miglab.encoders.plain_items import wire_text

__all__ = (
    "DESCRIPTION_TYPES",
    "RECORD_TYPES",
    "Module",
    "Spec",
    "choice",
    "enum",
    "integer",
    "member",
    "name_value",
    "ref",
    "seq",
    "seq_of",
    "type_text",
)

Spec = dict[str, Any]


def integer(lo: int | None = None, hi: int | None = None) -> Spec:
    """``INTEGER`` or ``INTEGER (lo..hi)``."""
    return {"type": "INTEGER"} if lo is None else {"type": "INTEGER", "restricted-to": [(lo, hi)]}


def ref(name: str, size: int | None = None) -> Spec:
    """A built-in type by name (``BOOLEAN``, ``OCTET STRING``...) or a type of the module."""
    return {"type": name} if size is None else {"type": name, "size": [size]}


def member(name: str, spec: Spec, optional: bool = False) -> Spec:
    """A component ``name`` of a ``SEQUENCE`` or ``CHOICE``."""
    m = {"name": name, **spec}
    if optional:
        m["optional"] = True
    return m


def seq(*members: Spec) -> Spec:
    """``SEQUENCE { members }``."""
    return {"type": "SEQUENCE", "members": list(members)}


def choice(*members: Spec) -> Spec:
    """``CHOICE { members }``."""
    return {"type": "CHOICE", "members": list(members)}


def seq_of(element: Spec, size: int | None = None) -> Spec:
    """``SEQUENCE OF element`` or ``SEQUENCE (SIZE(size)) OF element``."""
    out: Spec = {"type": "SEQUENCE OF", "element": element}
    if size is not None:
        out["size"] = [size]
    return out


def enum(*names: str) -> Spec:
    """``ENUMERATED { names }``, numbered from 0."""
    return {"type": "ENUMERATED", "values": [(n, i) for i, n in enumerate(names)]}


def name_value(s: str) -> tuple[str, str | bytes]:
    """The ``Name`` value of a QEMU idstr: its text, or its raw bytes when not UTF-8."""
    x = wire_text(s)
    return ("raw", x) if isinstance(x, bytes) else ("text", x)


def type_text(spec: Spec) -> str:
    """The ASN.1 notation of a type in parsed form (the forms the functions above make)."""
    t = spec["type"]
    if t in ("SEQUENCE", "CHOICE"):
        inner = ", ".join(_member_text(m) for m in spec["members"])
        return f"{t} {{ {inner} }}" if inner else f"{t} {{ }}"
    if t == "ENUMERATED":
        return f"ENUMERATED {{ {', '.join(n for n, _ in spec['values'])} }}"
    size = f" (SIZE({spec['size'][0]}))" if "size" in spec else ""
    if t == "SEQUENCE OF":
        return f"SEQUENCE{size} OF {type_text(spec['element'])}"
    if "restricted-to" in spec:
        lo, hi = spec["restricted-to"][0]
        return f"{t} ({lo}..{hi})"
    return f"{t}{size}"


def _member_text(m: Spec) -> str:
    rest = {k: v for k, v in m.items() if k not in ("name", "optional")}
    return f"{m['name']} {type_text(rest)}{' OPTIONAL' if m.get('optional') else ''}"


class Module:
    """An ASN.1 module: its text and its types in parsed form (for ``compile_dict``)."""

    __slots__ = ("name", "text", "types")

    def __init__(self, name: str, types: dict[str, Spec], comments: dict[str, str]) -> None:
        self.name = name
        self.types = types
        lines = [f"{name} DEFINITIONS AUTOMATIC TAGS ::= BEGIN"]
        for tname, spec in types.items():
            if tname in comments:
                lines.append(f"-- {comments[tname]}")
            if spec["type"] in ("SEQUENCE", "CHOICE") and len(spec["members"]) > 2:
                body = ",\n".join(f"    {_member_text(m)}" for m in spec["members"])
                lines.append(f"{tname} ::= {spec['type']} {{\n{body}\n}}")
            else:
                lines.append(f"{tname} ::= {type_text(spec)}")
        lines.append("END")
        self.text = "\n".join(lines) + "\n"

    def parsed(self) -> dict[str, Any]:
        """The module as ``asn1tools.parse_string(self.text)`` gives it: a fresh copy each
        time, as asn1tools' compiler writes into the types it is given (automatic tags)."""
        return {
            self.name: {
                "extensibility-implied": False,
                "imports": {},
                "object-classes": {},
                "object-sets": {},
                "tags": "AUTOMATIC",
                "types": copy.deepcopy(self.types),
                "values": {},
            }
        }


_U32 = ref("U32")
_U64 = ref("U64")
_NAME = ref("Name")
_BOOL = ref("BOOLEAN")
_OCTETS = ref("OCTET STRING")
_TEXT = ref("UTF8String")

RECORD_TYPES: dict[str, Spec] = {
    "U32": integer(0, 0xFFFFFFFF),
    "U64": integer(0, (1 << 64) - 1),
    "Name": choice(member("text", _TEXT), member("raw", _OCTETS)),  # raw: not UTF-8
    "Stream": seq(
        member("version", _U32),
        member("page-size", integer(1, 1 << 30)),
        member("eof", _BOOL),
        member("ignore-shared", _BOOL),
        member("configuration", ref("DeviceState"), optional=True),
        member("blocks", seq_of(ref("Block"))),
        member("records", seq_of(ref("Record"))),
        member(
            "vmdesc",
            choice(member("regenerated", ref("Vmdesc-Keys")), member("text", _OCTETS)),
            optional=True,
        ),
        member("trailer", _OCTETS),
    ),
    "Vmdesc-Keys": enum("page-size-devices", "configuration-page-size-devices"),
    "Block": seq(
        member("name", _NAME), member("used-length", _U64), member("addr", _U64, optional=True)
    ),
    "Record": choice(member("section", ref("Section")), member("command", ref("Command"))),
    "Command": seq(
        member("command", integer(0, 0xFFFF)),
        member("data", _OCTETS),
        member("packaged", seq_of(ref("Record")), optional=True),
    ),
    "Section": seq(
        member("kind", enum("start", "part", "end", "full")),
        member("section-id", _U32),
        member("name", _NAME),
        member("instance-id", _U32),
        member("version-id", _U32),
        member("footer", _BOOL),
        member(
            "payload",
            choice(
                member("device", ref("DeviceState")),
                member("ram", ref("Ram")),
                member("opaque", ref("Opaque")),
            ),
        ),
    ),
    "DeviceState": seq(member("version", _U32), member("state", ref("State"))),
    "Opaque": seq(member("data", _OCTETS), member("reason", _TEXT)),
    "Ram": seq(
        member("runs", seq_of(ref("Run"))),
        member("data", _OCTETS),
        member("block-list", seq_of(ref("Block")), optional=True),
    ),
    "Run": seq(
        member("skip", integer()),
        member("count", integer(2, 0xFFFFFFFF), optional=True),
        member("flags", integer(0, (1 << 30) - 1), optional=True),
        member("named", _BOOL, optional=True),
        member("block", integer(-1, 0x7FFFFFFF), optional=True),
        member("size", _U32, optional=True),
        member("sizes", seq_of(_U32), optional=True),
        member("repeated", _BOOL, optional=True),
    ),
}
RECORD_COMMENTS = {
    "Name": "a QEMU idstr: text, or its raw bytes when it is not UTF-8",
    "Vmdesc-Keys": "the vmdesc is what the states imply, with its keys in this order",
    "Ram": "a RAM chunk: runs of page records, then every record's payload in one string",
    "Run": (
        "records at consecutive page offsets with the same flags and block. skip: the\n"
        "-- first page offset minus the one after the run before; count absent: 1;\n"
        "-- flags: the page word's bits below the page size; named: the first record\n"
        "-- carries its block's name; flags, block, size absent: as in the run before;\n"
        "-- sizes: when the records' sizes differ; repeated: every record's payload is\n"
        "-- the one in data (8 bytes at most)"
    ),
}

DESCRIPTION_TYPES: dict[str, Spec] = {
    "Descriptions": seq_of(ref("Description")),
    "Description": seq(
        member("name", _NAME),
        member("version", integer(0, 0xFFFFFFFF)),
        member("minimum-version", integer(0, 0xFFFFFFFF)),
        member("fields", seq_of(ref("Field"))),
        member("subsections", seq_of(integer(0, 0xFFFFFFFF))),
    ),
    "Name": RECORD_TYPES["Name"],
    "Field": seq(
        member("name", _NAME),
        member("info", choice(member("known", integer(0, 255)), member("other", _TEXT))),
        member("size", integer(0, 1 << 32)),
        member("num", integer(0, (1 << 64) - 1), optional=True),
        member("num-field", _TEXT, optional=True),
        member("size-field", _TEXT, optional=True),
        member("struct", integer(0, 0xFFFFFFFF), optional=True),
        member("elements", seq_of(integer(0, 0xFFFFFFFF)), optional=True),
        member("version", integer(0, 0xFFFFFFFF), optional=True),
        member(
            "type",
            seq(member("kind", _TEXT), member("signed", _BOOL), member("check", _TEXT, True)),
            optional=True,
        ),
        member("index", integer(0, 0xFFFFFFFF), optional=True),
    ),
}
DESCRIPTION_COMMENTS = {
    "Description": "a VMStateDescription; subsections and structs by index into the table",
    "Field": (
        "a VMStateField: info by index into miglab's INFO_TYPES when known; type when\n"
        "-- kind, signedness or check differ from what info says; index: of a field read\n"
        "-- from a lone vmdesc index entry"
    ),
}
