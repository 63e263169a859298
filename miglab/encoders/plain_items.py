"""Checked reading of plain-tree items, and names that survive every format.

A plain tree (:mod:`miglab.encoders.tree`) comes back from JSON, CBOR,
MessagePack or ASN.1 as whatever the bytes said; every item is checked for
its type and range here before it becomes part of a stream, and a bad one is
an :class:`~miglab.errors.EncodingError` naming what it should have been.
QEMU idstrs are raw bytes, so a name that is not valid UTF-8 travels as
bytes and comes back through ``surrogateescape``.
"""

from __future__ import annotations

from typing import Any

from miglab.errors import EncodingError

__all__ = (
    "read_bool",
    "read_bytes",
    "read_int",
    "read_list",
    "read_opt_int",
    "read_text",
    "wire_text",
)


def wire_text(s: str) -> str | bytes:
    """A name as text when it is valid UTF-8, else as its raw bytes."""
    if s.isascii():
        return s
    try:
        s.encode()
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape")
    return s


def read_text(x: Any, what: str) -> str:
    if isinstance(x, str):
        try:  # a lone surrogate (U+D800 alone) has no bytes to write back
            x.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as exc:
            raise EncodingError(
                f"{what} is not writable text ({exc.reason} at {exc.start})"
            ) from None
        return x
    if isinstance(x, bytes):
        return x.decode("utf-8", "surrogateescape")
    raise EncodingError(f"{what} must be text, got {type(x).__name__}")


def read_int(x: Any, what: str, lo: int = 0, hi: int = (1 << 64) - 1) -> int:
    if not isinstance(x, int) or isinstance(x, bool) or not lo <= x <= hi:
        raise EncodingError(f"{what} must be an integer in [{lo}, {hi}], got {x!r:.40}")
    return x


def read_opt_int(x: Any, what: str) -> int | None:
    return None if x is None else read_int(x, what)


def read_list(x: Any, what: str) -> list[Any]:
    if not isinstance(x, list):
        raise EncodingError(f"{what} must be a list, got {type(x).__name__}")
    return x


def read_bytes(x: Any, what: str) -> bytes:
    if not isinstance(x, bytes):
        raise EncodingError(f"{what} must be bytes, got {type(x).__name__}")
    return x


def read_bool(x: Any, what: str) -> bool:
    if not isinstance(x, bool):
        raise EncodingError(f"{what} must be a bool, got {type(x).__name__}")
    return x
