"""A readable JSON view of a stream's decoded state (for ``miglab dump`` and notebooks).

This is a view for people, not an encoding: RAM is summarised per block and
buffers are shown as hex.  With ``text=True`` a buffer that holds a C string
(at least :data:`MIN_TEXT` printable ASCII characters, then only NUL
padding, as ``globalstate/runstate`` holds ``prelaunch``) is shown as that
string instead; ``miglab dump`` does so unless given ``--hex``.  The
lossless JSON encoding is in :mod:`miglab.encoders`.

:func:`dumps` writes the view as ``json.dumps(value, indent=1)`` does, byte
for byte, several times faster: the standard library indents in pure
Python, one call per list element, and a device-heavy stream has 70,000 of
them (register files, MAC tables).  Lists of plain ints or strings are
joined in one C-level call instead; an int list of few distinct values (a
32,768-entry MAC table holds a dozen) converts each value to text once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from json.encoder import encode_basestring_ascii

from miglab.stream.model import CommandRecord, Opaque, Stream
from miglab.stream.ram import RamPayload
from miglab.vmstate.state import VMState

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

__all__ = ("MIN_TEXT", "as_text", "dumps", "state_to_jsonable", "stream_to_jsonable")

#: The fewest printable characters a buffer must start with to be shown as text
#: (fewer would turn short binary fields, a 2-byte ``"AB"``, into words).
MIN_TEXT = 4

_PLAIN = frozenset((int, str, float, bool, type(None)))
_CONSTANTS = {bool: {True: "true", False: "false"}, type(None): {None: "null"}}


def as_text(data: bytes) -> str | None:
    """The C string a buffer holds (printable ASCII then only NULs), else None.

    >>> as_text(b"prelaunch\\0\\0\\0"), as_text(b"\\x01\\x02ab")
    ('prelaunch', None)
    """
    body = data.rstrip(b"\0")
    if len(body) < MIN_TEXT or b"\0" in body or not body.isascii():
        return None
    text = body.decode("ascii")
    return text if text.isprintable() else None


def state_to_jsonable(state: VMState, *, text: bool = False) -> dict[str, Any]:
    """A VMState as nested JSON-ready dicts (subsections under their names).

    ``text=True`` shows buffers holding a C string as that string (:func:`as_text`).
    """
    out: dict[str, Any] = {k: _value(v, text) for k, v in state.fields.items()}
    for name, sub in state.subsections.items():
        out[name] = state_to_jsonable(sub, text=text)
    return out


def _value(v: Any, text: bool) -> Any:
    if isinstance(v, VMState):
        return state_to_jsonable(v, text=text)
    if isinstance(v, list):
        if set(map(type, v)) <= _PLAIN:
            return v  # already JSON-ready: no per-element call
        return [_value(x, text) for x in v]
    if isinstance(v, bytes | bytearray | memoryview):
        data = bytes(v)
        return (text and as_text(data)) or data.hex()
    return v


def stream_to_jsonable(stream: Stream, *, text: bool = False) -> dict[str, Any]:
    """Machine, configuration, and one entry per record with its decoded payload.

    ``text=True`` shows buffers holding a C string as that string (:func:`as_text`).
    """
    records: list[dict[str, Any]] = []
    for rec in stream.records:
        if isinstance(rec, CommandRecord):
            records.append({"command": rec.name, "data": rec.data.hex()})
            continue
        entry: dict[str, Any] = {
            "kind": rec.kind.value,
            "section_id": rec.section_id,
            "name": rec.name,
            "instance_id": rec.instance_id,
            "version_id": rec.version_id,
        }
        p = rec.payload
        if isinstance(p, VMState):
            entry["state"] = state_to_jsonable(p, text=text)
        elif isinstance(p, RamPayload):
            entry["ram_records"] = len(p)
            if p.block_list is not None:
                entry["blocks"] = {b.name: b.used_length for b in p.block_list}
        elif isinstance(p, Opaque):
            entry["opaque"] = {"bytes": len(p), "reason": p.reason}
        records.append(entry)
    return {
        "machine": stream.machine,
        "configuration": (
            state_to_jsonable(stream.configuration, text=text) if stream.configuration else None
        ),
        "page_size": stream.page_size,
        "records": records,
    }


def dumps(value: Any) -> str:
    """``json.dumps(value, indent=1)``, the same text, written faster (see the module docstring)."""
    out: list[str] = []
    _write(value, "\n", out)
    return "".join(out)


def _int_texts(v: list[int]) -> Iterator[str]:
    """``map(str, v)``, with each value converted once where few values repeat a lot."""
    values = set(v)
    if len(values) * 8 > len(v):
        return map(str, v)
    return map({x: str(x) for x in values}.__getitem__, v)


def _write(v: Any, nl: str, out: list[str]) -> None:
    """Append the text of ``v`` at the indentation ``nl`` (a newline and its spaces)."""
    t = type(v)
    if t is dict and all(type(k) is str for k in v):
        if not v:
            out.append("{}")
            return
        inner = nl + " "
        sep = "{" + inner
        for k, x in v.items():
            out.append(sep)
            out.append(encode_basestring_ascii(k))
            out.append(": ")
            _write(x, inner, out)
            sep = "," + inner
        out.append(nl + "}")
    elif t is list:
        if not v:
            out.append("[]")
            return
        inner = nl + " "
        types = set(map(type, v))
        if types == {int}:
            out.append("[" + inner + ("," + inner).join(_int_texts(v)) + nl + "]")
        elif types == {str}:
            out.append("[" + inner + ("," + inner).join(map(encode_basestring_ascii, v)) + nl + "]")
        else:
            sep = "[" + inner
            for x in v:
                out.append(sep)
                _write(x, inner, out)
                sep = "," + inner
            out.append(nl + "]")
    elif t is str:
        out.append(encode_basestring_ascii(v))
    elif t is int:
        out.append(str(v))
    elif t in _CONSTANTS:
        out.append(_CONSTANTS[t][v])  # type: ignore[index]
    elif t in _PLAIN:
        out.append(json.dumps(v))
    else:
        # Anything else (dicts with non-str keys, tuples, int subclasses): the
        # standard encoder, re-indented to this depth.
        out.append(json.dumps(v, indent=1).replace("\n", nl))
