"""The object tree of a whole stream: header, configuration, records, vmdesc.

This is the tree every seam talks to (DESIGN.md).  It keeps enough to
re-encode QEMU's format byte for byte: section ids and kinds, which records
had footers, which RAM records named their block, and every byte miglab
could not decode as an :class:`Opaque` span.  The records themselves are
:mod:`miglab.stream.records`' (re-exported here); :meth:`Stream.to_bytes` writes
the tree with :mod:`miglab.stream.writer`, which sits below this module.  Its tables
(pandas) are the look seam's: :func:`miglab.sections_frame`, :func:`miglab.fields_frame`,
:func:`miglab.ram_frame` (:mod:`miglab.analysis.frames`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from miglab.errors import NotFoundError
from miglab.stream.configuration import machine_of
from miglab.stream.ram import RamContext
from miglab.stream.records import CommandRecord, Opaque, Record, Section, SectionKind
from miglab.vmstate.state import VMState
from miglab.wire import FILE_VERSION

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

__all__ = ("CommandRecord", "Opaque", "Record", "Section", "SectionKind", "Stream")


@dataclass(slots=True)
class Stream:
    """A whole migration stream as an object tree.

    Attributes:
        version: QEMU_VM_FILE_VERSION (3).
        configuration: the configuration block's state, or None (pc <= 2.3).
        records: sections and commands in stream order.
        eof: whether the QEMU_VM_EOF byte was present.
        vmdesc: the JSON trailer as parsed, or None.  A decoder may leave it
            unparsed (:meth:`defer_vmdesc`): it is then parsed when first read.
        vmdesc_text: the trailer's JSON text as read, written back while it
            still parses to ``vmdesc`` (QEMU 5.2 spaced its colons, ``" : "``).
        trailer: bytes after the vmdesc (or after EOF), kept verbatim.
        page_size: target page size used for RAM.
        ram: the RAM context (block list) shared by the RAM chunks.
        source_size: bytes of the input this tree was read from (0 if built).
        container: what the stream came in (a :mod:`miglab.containers` record:
            compressed, libvirt save image, qcow2 snapshot, mapped-ram file),
            or None for a bare stream; :func:`miglab.save` writes it back.
    """

    version: int = FILE_VERSION
    configuration: VMState | None = None
    records: list[Record] = field(default_factory=list)
    eof: bool = True
    vmdesc: dict[str, Any] | None = None
    vmdesc_text: bytes | None = field(default=None, repr=False, compare=False)
    trailer: bytes = b""
    page_size: int = 4096
    ram: RamContext = field(default_factory=RamContext)
    source_size: int = 0
    container: Any = None

    # --- convenience -------------------------------------------------------
    @property
    def machine(self) -> str | None:
        """The machine type from the configuration block (None without one)."""
        return machine_of(self.configuration) if self.configuration is not None else None

    @property
    def sections(self) -> list[Section]:
        """The section records, without commands."""
        return [r for r in self.records if isinstance(r, Section)]

    @property
    def commands(self) -> list[CommandRecord]:
        """The command records."""
        return [r for r in self.records if isinstance(r, CommandRecord)]

    def device(self, name: str, instance_id: int = 0) -> Section:
        """The FULL section whose idstr is ``name`` or ends with ``/name``."""
        for s in self.sections:
            if (
                s.kind is SectionKind.FULL
                and s.instance_id == instance_id
                and (s.name == name or s.name.endswith("/" + name))
            ):
                return s
        raise NotFoundError(f"no device section {name!r} instance {instance_id}")

    def vmdesc_json(self) -> bytes:
        """The vmdesc trailer: the text read if it still says ``vmdesc``, else QEMU's form.

        QEMU >= 6.0 writes ``", "``/``": "`` separators (5.2 wrote ``" : "``); an
        edited or built vmdesc is written that way.
        """
        if self.vmdesc is None:
            return b""
        if self.vmdesc_text is not None and json.loads(self.vmdesc_text) == self.vmdesc:
            return self.vmdesc_text
        return json.dumps(self.vmdesc, separators=(", ", ": ")).encode()

    def defer_vmdesc(
        self, text: bytes | str, parse: Callable[[bytes | str], dict[str, Any]]
    ) -> None:
        """Make ``parse(text)`` the vmdesc, parsed when :attr:`vmdesc` is first read.

        The vmdesc of a big guest is some 450,000 JSON objects, which only some
        readers look at; a decoder that has checked ``text`` (valid JSON, an
        object) defers the parse.  Reading ``vmdesc``, and anything that reads
        it (``==``, ``to_bytes``), parses it once; setting it drops the text.
        """
        _VMDESC_SLOT.__set__(self, _Deferred(text, parse))

    def deferred_vmdesc(self) -> bytes | str | None:
        """The text the vmdesc will be parsed from, while nobody has read it (else None).

        It parses to what :attr:`vmdesc` will be, so an encoder can carry it as it is.
        """
        raw = _VMDESC_SLOT.__get__(self, Stream)
        return raw.text if type(raw) is _Deferred else None

    # --- writing -------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The legacy QEMU stream for this tree (byte-exact for an unedited load)."""
        from miglab.stream.writer import stream_to_bytes  # the reader needs no writer

        return stream_to_bytes(self)


@dataclass(frozen=True, slots=True)
class _Deferred:
    """A vmdesc not yet parsed: its JSON text and the function that parses it."""

    text: bytes | str
    parse: Callable[[bytes | str], dict[str, Any]]


# ``vmdesc`` is a slot behind a property: reading it parses a deferred vmdesc
# (once, in place); the dataclass's __init__, __eq__ and repr and
# dataclasses.replace all go through the property, so they see the dict.
_VMDESC_SLOT: Any = Stream.__dict__["vmdesc"]


def _get_vmdesc(stream: Stream) -> dict[str, Any] | None:
    raw = _VMDESC_SLOT.__get__(stream, Stream)
    if type(raw) is _Deferred:
        raw = raw.parse(raw.text)
        _VMDESC_SLOT.__set__(stream, raw)
    return raw


Stream.vmdesc = property(_get_vmdesc, _VMDESC_SLOT.__set__)  # type: ignore[assignment,misc]
