"""Safety limits for untrusted input, as named settings.

A migration stream comes from another machine.  Every length, count and
depth read from it is checked against what remains of the input *and*
against these limits before miglab allocates or loops on it, so a hostile
stream costs at most a small multiple of its own size in memory and time.
Change them on the :data:`LIMITS` object (e.g. in a notebook) when a real
stream needs more.  Nothing read from the input is ever evaluated or
unpickled.

Per-item limits (one array, one vmdesc) do not bound what a combination
costs: arrays of zero-sized structs nested in one another, or shared
references expanded again and again, cost nothing on the wire each.  So
every decode also runs under one :class:`Budget` for the whole input
(:func:`budget`): the elements it may decode in total grow with the input's
size.  The stream reader and every encoder's ``decode`` open one; the one
walk (``miglab.vmstate.walk``) and the decoders charge it through
:func:`charge_elements`, so a new format that decodes through them cannot
forget it.

Output is budgeted the same way: a hostile input must not make miglab write
without end (a zero page of a declared 1 GiB page size, a tree whose fields
declare huge sizes).  :class:`OutputBudget` allows ``output_bytes_per_input_byte``
bytes written per input byte, plus ``output_slack``; the one safe writer
(:mod:`miglab.files`) charges every byte it writes, before writing it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from miglab.errors import LimitExceeded

__all__ = ("LIMITS", "Budget", "Limits", "OutputBudget", "budget", "charge_elements")


@dataclass(slots=True)
class Limits:
    """The limits in force.

    Attributes:
        max_vmdesc_bytes: largest vmdesc JSON trailer accepted.
        max_depth: deepest nesting of structs/subsections (vmdesc, schema, tree).
        max_sections: most records (sections + commands) in one stream.
        max_array_elements: most elements in one array field.
        max_schema_bytes: largest ``-dump-vmstate`` schema file accepted.
        max_packaged_depth: most nested PACKAGED command blobs.
        max_decompressed_bytes: most bytes a compressed container may expand to.
        max_expansion_ratio: most decompressed bytes per compressed byte (a
            "zip bomb" bound; a first 64 MiB are always allowed).
        max_container_depth: most containers nested in one another.
        max_snapshots: most internal snapshots read from one qcow2 table.
        max_section_bytes: largest non-RAM record a live stream may make the proxy hold
            in memory (device sections and commands are held whole; RAM pages are not).
        elements_per_input_byte: decoded elements (array elements, struct
            instances, container items) one input byte may account for, on
            top of ``element_slack``: every element of a real stream or tree
            costs at least a byte (a bit in ASN.1 PER), except zero-sized structs.
        element_slack: decoded elements always allowed per decode.
        output_bytes_per_input_byte: bytes one input byte may make miglab write
            (extract, convert, save, export-elf), on top of ``output_slack``: a
            real stream's densest record, a zero page or an XBZRLE page of a few
            bytes, writes one 4 KiB page (under 512 per byte); holes are not counted.
        output_slack: bytes always allowed per output.
    """

    max_vmdesc_bytes: int = 64 << 20
    max_depth: int = 32
    max_sections: int = 1 << 20
    max_array_elements: int = 1 << 22
    max_schema_bytes: int = 64 << 20
    max_packaged_depth: int = 2
    max_decompressed_bytes: int = 64 << 30
    max_expansion_ratio: int = 4096
    max_container_depth: int = 4
    max_snapshots: int = 65536
    max_section_bytes: int = 64 << 20
    elements_per_input_byte: int = 8
    element_slack: int = 1 << 14
    output_bytes_per_input_byte: int = 1024
    output_slack: int = 64 << 20


LIMITS = Limits()


class Budget:
    """What one decode of ``input_bytes`` bytes may still spend.

    Attributes:
        elements: decoded elements left before :class:`LimitExceeded`.
    """

    __slots__ = ("elements", "input_bytes")

    def __init__(self, input_bytes: int) -> None:
        self.input_bytes = input_bytes
        self.elements = LIMITS.element_slack + LIMITS.elements_per_input_byte * input_bytes

    def charge(self, n: int, *, offset: int | None = None, path: str | None = None) -> None:
        """Spend ``n`` elements; raise when the input's budget is gone."""
        self.elements -= n
        if self.elements < 0:
            raise LimitExceeded(
                f"more decoded elements than a {self.input_bytes}-byte input may hold "
                "(LIMITS.elements_per_input_byte, LIMITS.element_slack)",
                offset=offset,
                path=path,
            )


_CURRENT: ContextVar[Budget | None] = ContextVar("miglab_budget", default=None)


@contextlib.contextmanager
def budget(input_bytes: int) -> Iterator[Budget]:
    """Run a decode of ``input_bytes`` under one budget (an outer one is kept: a
    container's inner stream spends its container's)."""
    outer = _CURRENT.get()
    if outer is not None:
        yield outer
        return
    fresh = Budget(input_bytes)
    token = _CURRENT.set(fresh)
    try:
        yield fresh
    finally:
        _CURRENT.reset(token)


def charge_elements(n: int, *, offset: int | None = None, path: str | None = None) -> None:
    """Spend ``n`` decoded elements from the budget in force (none outside a decode)."""
    b = _CURRENT.get()
    if b is not None:
        b.charge(n, offset=offset, path=path)


class OutputBudget:
    """What one output (all the files of one extract, save or convert) may still write.

    ``input_bytes`` is the size of the input the output is made from
    (``Stream.source_size``); ``None`` means a tree built in Python, which is
    not hostile input and is not limited.

    Attributes:
        left: bytes left before :class:`LimitExceeded` (None: unlimited).
    """

    __slots__ = ("input_bytes", "left")

    def __init__(self, input_bytes: int | None) -> None:
        self.input_bytes = input_bytes
        self.left = (
            None
            if input_bytes is None
            else LIMITS.output_slack + LIMITS.output_bytes_per_input_byte * input_bytes
        )

    def charge(self, n: int, *, path: str | None = None) -> None:
        """Spend ``n`` bytes about to be written; raise (writing nothing) when they are not there."""
        if self.left is None:
            return
        if n > self.left:
            raise LimitExceeded(
                f"more output than a {self.input_bytes}-byte input may make "
                "(LIMITS.output_bytes_per_input_byte, LIMITS.output_slack)",
                path=path,
            )
        self.left -= n
