"""Read one knowledge file into its typed record, or say where it is malformed.

Every file is decoded by one msgspec call against its record type, which checks every
member's type, the required members and (``forbid_unknown_fields``) that no member is
misspelt; the records' ``__post_init__`` add the checks a type cannot state (a
cross-reference, a hex string).  Whatever fails becomes one
:class:`~miglab.errors.KnowledgeError` naming the file and the JSON path of the member.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any, TypeVar

import msgspec

from miglab.errors import KnowledgeError

__all__ = ("Record", "check", "decode_knowledge", "load_knowledge")

T = TypeVar("T")

# msgspec ends a validation message with where: " - at `$.a[0].b`" (a bad key: " - at `key`
# in `$.a`").
_WHERE = re.compile(r" - at `(key` in `)?(\$[^`]*)`$")


class Record(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the knowledge records: immutable, keyword-built, no unknown members."""


def decode_knowledge(name: str, data: bytes | str, type: type[T]) -> T:
    """``data``, the text of knowledge file ``name``, as a ``type`` record.

    Raises:
        KnowledgeError: ``data`` is no JSON, or a member is missing, unknown, of the wrong
            type or inconsistent; the error names ``name`` and the member's JSON path.
    """
    try:
        return msgspec.json.decode(data, type=type)
    except msgspec.ValidationError as e:
        text = str(e)
        m = _WHERE.search(text)
        if m is None:
            raise KnowledgeError(text, file=name, path="$") from None
        what = text[: m.start()] + (" (in a key)" if m.group(1) else "")
        raise KnowledgeError(what, file=name, path=m.group(2)) from None
    except msgspec.DecodeError as e:
        raise KnowledgeError(f"not JSON: {e}", file=name, path="$") from None


def load_knowledge(name: str, type: type[T]) -> T:
    """The shipped ``miglab/knowledge/<name>`` as a ``type`` record (not cached: see the
    accessors of :mod:`miglab.knowledge`)."""
    data = resources.files("miglab.knowledge").joinpath(name).read_bytes()
    return decode_knowledge(name, data, type)


def check(condition: bool, message: str, *args: Any) -> None:
    """Refuse an inconsistent record from its ``__post_init__`` (msgspec adds the path)."""
    if not condition:
        raise ValueError(message.format(*args) if args else message)
