"""``capabilities.json`` as a typed record: the capability bits, encoder order, live support.

Read by :mod:`miglab.capabilities`, which builds its name -> bit table from it.  A bit is
fixed forever once given, so the record refuses two names on one bit (or one name twice),
a bit outside its origin's block, and an encoder or live entry that names no capability.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from miglab.knowledge._load import Record, check, check_refs

__all__ = ("Capabilities", "Capability", "LiveSupport")


class Capability(Record, frozen=True):
    name: str
    bit: Annotated[int, msgspec.Meta(ge=0, le=63)]
    origin: Literal["miglab", "qemu"]  # bits 0-31 and 32-63
    meaning: str

    def __post_init__(self) -> None:
        check(
            (self.bit >= 32) == (self.origin == "qemu"),
            "a {} bit must be in its block",
            self.origin,
        )


class LiveEntry(Record, frozen=True):
    name: str
    why: str


class LiveSupport(Record, frozen=True):
    about: str
    supports: tuple[LiveEntry, ...]


class Capabilities(Record, frozen=True):
    """``capabilities.json``."""

    about: str
    capabilities: tuple[Capability, ...]
    encoder_preference: tuple[str, ...]  # encoder capability names, best first
    encoder_preference_why: str
    live: LiveSupport

    def __post_init__(self) -> None:
        names = [c.name for c in self.capabilities]
        bits = [c.bit for c in self.capabilities]
        check(len(set(names)) == len(names), "a capability name is listed twice")
        check(len(set(bits)) == len(bits), "two capabilities share a bit")
        named = (*self.encoder_preference, *(e.name for e in self.live.supports))
        check_refs("{!r} is no capability", set(names), ((name,) for name in named))
