"""Descriptions from a stream's vmdesc trailer (the JSON QEMU appends after EOF).

The vmdesc describes *this* stream: for every device section written in the
non-iterative phase, the fields actually sent with their VMStateInfo type
and size, and the subsections actually sent.  That is enough to decode
every byte of those sections, though it is not a schema (no count links, no
predicates).  Shapes handled (QEMU-FORMAT.md 1.8):

* ``array_len``: one object stands for N equal consecutive elements;
* ``index``: elements described one by one (structs with subsections,
  pointer arrays); consecutive ``index`` entries 0..N-1 of one name become
  one array whose elements keep their own descriptions;
* ``tmp`` (``VMSTATE_WITH_TMP``): the nested fields sit on the field itself;
* ``nullptr``; any unknown type is kept as an opaque span of ``size`` bytes.

A known scalar type (``uint32``, ``bool``, ``float64``, ``nullptr``...) must
carry its own width: QEMU writes the bytes one element took on the wire
(``vmsd_desc_field_end``), which for these types is always the C type's
size.  Any other ``size`` (2^32 bytes for a ``uint32``) is refused rather
than kept as an opaque span of that size.
"""

from __future__ import annotations

import dataclasses
import marshal
import re
from collections.abc import Mapping, Sequence

from miglab.errors import DescriptionError, LimitExceeded
from miglab.limits import LIMITS
from miglab.vmstate.description import (
    INFO_TYPES,
    VMStateDescription,
    VMStateField,
    field,
    unique_name,
)

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

__all__ = ("description_from_vmdesc", "require_unicode")

# Device descriptions built so far, shared between loads: streams from the same
# QEMU and machine carry the same vmdesc entries, and descriptions are
# immutable.  Bounded; cleared when full.
_MEMO: dict[tuple[bytes, int, int], VMStateDescription] = {}
_MEMO_MAX = 4096
# Kinds whose wire width the type name fixes (miglab.vmstate.description.INFO_TYPES).
_SCALAR_KINDS = frozenset(("int", "bool", "float", "null"))


def _int(obj: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = obj.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DescriptionError(
            f"vmdesc {where}: {key!r} must be a non-negative integer, got {value!r}"
        )
    return value


# A JSON escape of a UTF-16 surrogate: json.loads turns a lone one into a str UTF-8 cannot encode.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def require_unicode(text: bytes, parsed: Any) -> None:
    """Refuse a vmdesc (``text``, and ``parsed`` from it) holding a string UTF-8 cannot encode.

    QEMU's JSON writer never writes a lone surrogate; one decodes to a ``str``
    that every later writer of names (tables, encoders, the fleet) fails on.
    Only a text with a surrogate escape is walked, so real vmdescs cost one scan.

    Raises:
        DescriptionError: a key or string value is not valid Unicode.
    """
    if not _SURROGATE_ESCAPE.search(text):
        return
    todo = [parsed]
    while todo:
        obj = todo.pop()
        if isinstance(obj, dict):
            for k, v in obj.items():
                _text(k, "key")
                todo.append(v)
        elif isinstance(obj, list):
            todo.extend(obj)
        elif isinstance(obj, str):
            _text(obj, "string")


def _text(value: Any, what: str) -> str:
    """``value`` if it is text that UTF-8 can encode (JSON's ``\\udc80`` escapes decode to
    lone surrogates, which QEMU never writes and which every writer of names refuses)."""
    if not isinstance(value, str):
        raise DescriptionError(f"vmdesc {what} must be a string")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise DescriptionError(f"vmdesc {what} {value!r:.60} is not valid Unicode") from None
    return value


def description_from_vmdesc(
    entry: Mapping[str, Any],
    depth: int = 0,
    cache: dict[Any, VMStateDescription] | None = None,
) -> VMStateDescription:
    """Build a description from one vmdesc device (or nested struct) object.

    Args:
        entry: the vmdesc object (``vmsd_name``, ``version``, ``fields``...).
        depth: nesting depth so far (bounded by ``LIMITS.max_depth``).
        cache: nested descriptions already built, keyed by their serialized
            form; a stream repeats the same nested descriptions many times
            (array elements, PCI parents), and frozen descriptions can be
            shared.  Top-level entries (``depth == 0``) are also remembered
            between calls, keyed the same way.

    Raises:
        DescriptionError: the object does not have the vmdesc shape.
    """
    if cache is None:
        cache = {}
    if depth == 0:
        key = _key(entry)
        if key is not None:
            memo_key = (key, LIMITS.max_depth, LIMITS.max_array_elements)
            hit = _MEMO.get(memo_key)
            if hit is None:
                hit = _build(entry, depth, cache)
                if len(_MEMO) >= _MEMO_MAX:
                    _MEMO.clear()
                _MEMO[memo_key] = hit
            return hit
    return _build(entry, depth, cache)


def _key(entry: Any) -> bytes | None:
    """The entry's exact serialized form (``True``, ``1`` and ``1.0`` differ), or None.

    ``marshal`` is the fastest exact serializer of JSON values in the standard
    library (about 4x faster than ``json.dumps``); version 2 writes no
    back-references, so equal values give equal bytes.
    """
    try:
        return marshal.dumps(entry, 2)
    except (ValueError, TypeError):  # not plain data, or nested too deeply for marshal
        return None


def _build(
    entry: Mapping[str, Any], depth: int, cache: dict[bytes, VMStateDescription]
) -> VMStateDescription:
    if depth > LIMITS.max_depth:
        raise LimitExceeded(f"vmdesc nested deeper than {LIMITS.max_depth}")
    if not isinstance(entry, Mapping):
        raise DescriptionError(f"vmdesc entry must be an object, got {type(entry).__name__}")
    name = _text(entry.get("vmsd_name", ""), "'vmsd_name'")
    raw_fields = entry.get("fields", [])
    raw_subs = entry.get("subsections", [])
    if not isinstance(raw_fields, list) or not isinstance(raw_subs, list):
        raise DescriptionError(f"vmdesc {name}: 'fields' and 'subsections' must be lists")
    return VMStateDescription(
        name=name,
        version_id=_int(entry, "version", name, 0),
        fields=tuple(_fields(raw_fields, name, depth, cache)),
        subsections=tuple(description_from_vmdesc(s, depth + 1, cache) for s in raw_subs),
    )


def _nested(
    obj: Mapping[str, Any], where: str, depth: int, cache: dict[bytes, VMStateDescription]
) -> VMStateDescription:
    nested = obj if obj.get("type") == "tmp" and "fields" in obj else obj.get("struct")
    if not isinstance(nested, Mapping):
        raise DescriptionError(f"vmdesc {where}: struct field without a 'struct' object")
    if depth > LIMITS.max_depth:
        raise LimitExceeded(f"vmdesc nested deeper than {LIMITS.max_depth}")
    key = _key(nested)
    if key is None:
        return description_from_vmdesc(nested, depth + 1, cache)
    hit = cache.get(key)
    if hit is None:
        hit = cache[key] = description_from_vmdesc(nested, depth + 1, cache)
    return hit


def _one(
    obj: Any, where: str, depth: int, name: str, cache: dict[bytes, VMStateDescription]
) -> VMStateField:
    if not isinstance(obj, Mapping):
        raise DescriptionError(f"vmdesc {where}: field must be an object")
    info = _text(obj.get("type"), f"{where}.{name}: 'type'")
    size = _int(obj, "size", f"{where}.{name}", 0)
    num = _int(obj, "array_len", f"{where}.{name}") if "array_len" in obj else None
    if num is not None and num > LIMITS.max_array_elements:
        raise LimitExceeded(f"vmdesc {where}.{name}: array_len {num} exceeds the limit")
    if info in ("struct", "vstruct", "tmp"):
        return field(name, info, num=num, struct=_nested(obj, f"{where}.{name}", depth, cache))
    if info == "capability":
        return field(name, info, num=num)
    kind, natural, _, _ = INFO_TYPES.get(info, ("bytes", 0, False, None))
    if kind in _SCALAR_KINDS and size != natural:
        raise DescriptionError(
            f"vmdesc {where}.{name}: a {info!r} is {natural} byte(s) on the wire, "
            f"the vmdesc says {size}"
        )
    return field(name, info, size=size, num=num)


def _fields(
    raw: Sequence[Any], where: str, depth: int, cache: dict[bytes, VMStateDescription]
) -> list[VMStateField]:
    out: list[VMStateField] = []
    used: set[str] = set()
    i = 0
    while i < len(raw):
        obj = raw[i]
        if not isinstance(obj, Mapping) or not isinstance(obj.get("name"), str):
            raise DescriptionError(f"vmdesc {where}: field {i} has no name")
        base = _text(obj["name"], f"{where}: field {i}'s name")
        run = _index_run(raw, i) if obj.get("index") == 0 else 1
        if run > 1 and all(raw[j].get("type") in ("struct", "vstruct") for j in range(i, i + run)):
            elements = tuple(
                _nested(raw[j], f"{where}.{base}", depth, cache) for j in range(i, i + run)
            )
            first = _one(obj, where, depth, base, cache)
            out.append(
                VMStateField(
                    name=unique_name(base, used),
                    info=first.info,
                    kind="struct",
                    struct=elements[0],
                    elements=elements,
                )
            )
            i += run
            continue
        key = base if "index" not in obj else f"{base}[{obj['index']}]"
        f = _one(obj, where, depth, unique_name(key, used), cache)
        if "index" in obj:
            f = dataclasses.replace(f, index=_int(obj, "index", f"{where}.{base}"))
        out.append(f)
        i += 1
    return out


def _index_run(raw: Sequence[Any], start: int) -> int:
    """Length of the run of entries named like ``raw[start]`` with index 0, 1, 2..."""
    name = raw[start].get("name")
    n = 0
    while (
        start + n < len(raw)
        and isinstance(raw[start + n], Mapping)
        and raw[start + n].get("name") == name
        and raw[start + n].get("index") == n
    ):
        n += 1
    return n
