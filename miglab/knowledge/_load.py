"""Read one knowledge file into its typed record, or say where it is malformed.

Every file is decoded by one msgspec call against its record type, which checks every
member's type, the required members and (``forbid_unknown_fields``) that no member is
misspelt; the records' ``__post_init__`` add the checks a type cannot state (a
cross-reference, a hex string).  Whatever fails becomes one
:class:`~miglab.errors.KnowledgeError` naming the file and the JSON path of the member.

msgspec's paths say ``[...]`` for a key of a JSON object it decoded as a dict (it does not
keep the key).  Most knowledge files are keyed that way (``qemu["10.0"]``), so an error
finds the key itself: the dict's entries are decoded in order and the first one fails, so
the shortest prefix of the dict that fails with the same message ends in the culprit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Container, Iterable
from importlib import resources
from typing import Any, TypeVar

import msgspec

from miglab.errors import KnowledgeError

__all__ = ("Record", "check", "check_refs", "decode_knowledge", "load_knowledge")

T = TypeVar("T")

# msgspec ends a validation message with where: " - at `$.a[0].b`" (a bad key: " - at `key`
# in `$.a`").
_WHERE = re.compile(r" - at `(key` in `)?(\$[^`]*)`$")
# One step of such a path: a member, an array index, or a dict key msgspec did not keep.
_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[(\.\.\.)\]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Record(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of the knowledge records: immutable, keyword-built, no unknown members."""


def decode_knowledge(name: str, data: bytes | str, record: type[T]) -> T:
    """``data``, the text of knowledge file ``name``, as a ``record``.

    Raises:
        KnowledgeError: ``data`` is no JSON, or a member is missing, unknown, of the wrong
            type or inconsistent; the error names ``name`` and the member's JSON path.
    """
    try:
        return msgspec.json.decode(data, type=record)
    except msgspec.ValidationError as e:
        text = str(e)
        m = _WHERE.search(text)
        if m is None:
            raise KnowledgeError(text, file=name, path="$") from None
        what = text[: m.start()] + (" (in a key)" if m.group(1) else "")
        try:
            path = _with_keys(json.loads(data), m.group(2), record, text)
        except ValueError:  # invalid JSON further on: msgspec stopped before it
            path = m.group(2)
        raise KnowledgeError(what, file=name, path=path) from None
    except msgspec.DecodeError as e:
        raise KnowledgeError(f"not JSON: {e}", file=name, path="$") from None


def _with_keys(raw: Any, path: str, record: type, text: str) -> str:
    """msgspec's ``path`` with each ``[...]`` replaced by the key it stands for, as far as
    the keys can be found (``$.qemu['10.0'].max_command``)."""
    out, node = "$", raw
    steps: list[str | int] = []
    for m in _STEP.finditer(path, 1):
        member, index, unknown = m.groups()
        if member is not None and isinstance(node, dict) and member in node:
            step: str | int = member
        elif index is not None and isinstance(node, list) and int(index) < len(node):
            step = int(index)
        elif unknown is not None and isinstance(node, dict):
            found = _failing_key(raw, steps, node, record, text)
            if found is None:
                return out + path[m.start() :]
            step = found
        else:
            return out + path[m.start() :]
        steps.append(step)
        node = node[step]
        out += _render(step, member is not None)
    return out


def _failing_key(
    raw: Any, steps: list[str | int], node: dict[str, Any], record: type, text: str
) -> str | None:
    """The key of ``node`` (at ``steps`` in ``raw``) whose entry fails with ``text``."""
    keys = list(node)
    for i in range(len(keys)):
        doc = _replaced(raw, steps, {k: node[k] for k in keys[: i + 1]})
        try:
            msgspec.json.decode(msgspec.json.encode(doc), type=record)
        except msgspec.ValidationError as e:
            if str(e) == text:
                return keys[i]
    return None


def _replaced(raw: Any, steps: list[str | int], value: Any) -> Any:
    """A copy of ``raw`` with the node at ``steps`` replaced (copying only that branch)."""
    if not steps:
        return value
    copy: Any = dict(raw) if isinstance(raw, dict) else list(raw)
    copy[steps[0]] = _replaced(raw[steps[0]], steps[1:], value)
    return copy


def _render(step: str | int, member: bool) -> str:
    if isinstance(step, int):
        return f"[{step}]"
    return f".{step}" if member or _NAME.fullmatch(step) else f"[{step!r}]"


def load_knowledge(name: str, record: type[T]) -> T:
    """The shipped ``miglab/knowledge/<name>`` as a ``record`` (not cached: see the
    accessors of :mod:`miglab.knowledge`)."""
    data = resources.files("miglab.knowledge").joinpath(name).read_bytes()
    return decode_knowledge(name, data, record)


def check(condition: bool, message: str, *args: Any) -> None:
    """Refuse an inconsistent record from its ``__post_init__`` (msgspec adds the path)."""
    if not condition:
        raise ValueError(message.format(*args) if args else message)


def check_refs(message: str, known: Container[Any], refs: Iterable[tuple[Any, ...]]) -> None:
    """Refuse a dangling cross-reference from a record's ``__post_init__``.

    Each of ``refs`` is ``(*where, ref)``: ``ref`` must be in ``known`` (the names a member
    defines, or a ``range`` of indexes); the first that is not is refused with
    ``message.format(*where, ref)``.

    >>> check_refs("{!r} is no capability", {"xbzrle"}, [("events",)])
    Traceback (most recent call last):
    ...
    ValueError: 'events' is no capability
    """
    for *where, ref in refs:
        if ref not in known:
            raise ValueError(message.format(*where, ref))
