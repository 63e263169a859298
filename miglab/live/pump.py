"""One migration stream from the source socket to the destination socket, converted on the way.

The pump walks the stream as it arrives, record by record, with the same framing and the
same device decoding as the file reader (:class:`~miglab.stream.reader.PieceReader`), and
converts with the same code as ``miglab compat``
(:class:`~miglab.compat.qemu.Conversion`):

* header: forwarded;
* configuration block: the destination's machine type written in;
* RAM sections: only the framing of each page record is parsed (page word, block name,
  payload length); the records are forwarded straight from the receive buffer, so pages
  are never held and memory stays bounded whatever the guest's RAM size;
* device sections and commands: decoded (descriptions harvested for the source build,
  then its ``-dump-vmstate`` schema, else an opaque span found by its footer), converted,
  and re-encoded only when the conversion changed them: an unchanged record goes out as
  the bytes that came in, so the same QEMU in and out is byte-transparent;
* the vmdesc trailer: the entries of changed sections rewritten, as ``miglab compat``
  does for a file.

From the source's first END or FULL section on, the guest is stopped (QEMU sends them after
``vm_stop``), so every millisecond the pump spends until the trailer is sent is downtime.
Python's cyclic garbage collector waits meanwhile: decoding the device sections allocates
enough to set off a full collection, which walks every object the process holds (~30 ms
here, as much as the conversion itself); reference counting still frees what the records
leave behind, and the collector runs again when the stream is done.

A conversion QEMU would refuse (guest-visible changes not allowed, a device with state
the destination has no section for) stops the pump before the record is sent; the
destination then sees its stream end early and fails, and the source keeps running.
"""

from __future__ import annotations

import gc
import json
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from miglab.compat.qemu import Conversion
from miglab.compat.report import ChangeReport
from miglab.errors import MigrationFormatError, TruncatedStreamError
from miglab.live.decoding import prepare_decoding
from miglab.live.inbound import Window
from miglab.stream.configuration import machine_of
from miglab.stream.framing import (
    FILE_HEADER_SIZE,
    FOOTER_SIZE,
    VMDESC_HEADER_SIZE,
    read_file_header,
    read_full_header,
    read_section_id,
    write_configuration,
    write_vmdesc,
)
from miglab.stream.model import Opaque, Section, SectionKind, Stream
from miglab.stream.reader import PieceReader
from miglab.stream.writer import write_records
from miglab.visitors.qemufile import QEMUFileReader, QEMUFileWriter
from miglab.vmstate.description import VMStateDescription
from miglab.vmstate.from_schema import SchemaIndex
from miglab.vmstate.state import VMState
from miglab.wire import (
    RAM_COMPRESS_PAGE,
    RAM_CONTINUE,
    RAM_EOS,
    RAM_MEM_SIZE,
    RAM_MULTIFD_FLUSH,
    RAM_PAGE,
    RAM_PAGE_KINDS,
    RAM_XBZRLE,
    RAM_ZERO,
    SectionType,
)

__all__ = ("Pump", "PumpResult")


_T = TypeVar("_T")
_BE64 = struct.Struct(">Q")
_BE32 = struct.Struct(">I")
_BE16 = struct.Struct(">H")
#: A page word as it is on the wire.
_WIRE_WORD = np.dtype(">u8")
_U64 = (1 << 64) - 1
#: Whole-page records in a row from which they are checked as one run (fewer: one by one).
_MIN_RUN = 8
#: First guess of a device record's size (doubled while the record is longer).
_FIRST_GUESS = 64 << 10


@dataclass(slots=True)
class PumpResult:
    """What went through.

    Attributes:
        passes: RAM passes seen on the wire (the page addresses started over).
        pages: RAM page records forwarded.
        device_sections: device sections read; ``decoded`` of them had a description.
        report: the conversion's changes (empty when source and destination are alike).
        complete: the stream ended with QEMU_VM_EOF (and its vmdesc, if any).
    """

    passes: int = 0
    pages: int = 0
    device_sections: int = 0
    decoded: int = 0
    report: ChangeReport = field(default_factory=lambda: ChangeReport(()))
    complete: bool = False


class Pump:
    """Convert one stream from ``window``'s source to its destination.

    Args:
        window: the source's bytes (and the destination socket).
        src_qemu, to_qemu: the two QEMU versions.
        machine: the destination's machine type.
        allow_guest_visible: accept changes the guest could observe.
        schema: the source build's ``-dump-vmstate`` schema (None: none).
        descriptions: section idstr -> descriptions harvested for the source build.
        decode: decode device sections even when source and destination are the same
            build and machine (otherwise they are only framed and forwarded).
    """

    def __init__(
        self,
        window: Window,
        *,
        src_qemu: str,
        to_qemu: str,
        machine: str,
        allow_guest_visible: bool = False,
        schema: SchemaIndex | None = None,
        descriptions: Mapping[str, Sequence[VMStateDescription]] | None = None,
        decode: bool = False,
    ) -> None:
        self.w = window
        self.src_qemu, self.to_qemu, self.machine = src_qemu, to_qemu, machine
        self.allow_guest_visible = allow_guest_visible
        self._schema, self._descriptions, self._decode = schema, descriptions, decode
        self.reader = PieceReader()
        self.conversion: Conversion | None = None
        self.result = PumpResult()
        self.page_size = 4096
        self._ram_id: int | None = None
        self._blocks: dict[bytes, int] = {}
        self._block = -1
        self._last_page = -1
        #: _page_run's masks: the flag bits of a page word, and their value in a run.
        self._run_masks = (np.uint64(0), np.uint64(0))
        #: The configuration block sent instead of the source's (None: forwarded as is).
        self._new_config: VMState | None = None
        #: The cyclic GC was turned off when the source stopped the guest (on again at the end).
        self._gc_paused = False

    def run(self) -> PumpResult:
        """Pump the whole stream; return what went through.

        Raises:
            MigrationFormatError: the source's bytes are not a stream miglab can follow
                (``TruncatedStreamError`` when the source closed early).
            CompatError: the conversion refused a record.
            OSError: a socket failed.
        """
        w = self.w
        w.need(FILE_HEADER_SIZE, "the file header")
        read_file_header(QEMUFileReader(w.peek(FILE_HEADER_SIZE)))
        w.forward(FILE_HEADER_SIZE)
        w.need(1, "the first record")
        if w.peek(1)[0] == SectionType.CONFIGURATION:
            self._configuration()
        else:  # pc <= 2.3 sends no machine name: the machine cannot change, it is --machine
            self._start_conversion(self.machine)
        try:
            while self._record():
                pass
            self._trailer()
        finally:
            if self._gc_paused:
                self._gc_paused = False
                gc.enable()
        assert self.conversion is not None
        self.result.report = self.conversion.report()
        self.result.complete = True
        return self.result

    # --- pieces --------------------------------------------------------------
    def _start_conversion(self, source_machine: str) -> None:
        self.conversion = Conversion(
            source_machine=source_machine,
            to_qemu=self.to_qemu,
            machine=self.machine,
            from_qemu=self.src_qemu,
            allow_guest_visible=self.allow_guest_visible,
        )
        alike = self.src_qemu == self.to_qemu and source_machine == self.machine
        if self._decode or not alike:
            self.reader = PieceReader(schema=self._schema, descriptions=self._descriptions)
            prepare_decoding(self._descriptions or {})  # the guest still runs: built now

    def _configuration(self) -> None:
        config, end = self._read(lambda d, f: self.reader.configuration(d, 0, final=f))
        if (b := config.subsections.get("configuration/target-page-bits")) is not None:
            self.page_size = 1 << min(int(b.fields["target_page_bits"]), 30)
        source_machine = machine_of(config)
        self._start_conversion(source_machine)
        assert self.conversion is not None
        new = self.conversion.configuration(config)
        if new is config:
            self.w.forward(end)
        else:
            assert new is not None  # a configuration converts to one
            self._new_config = new
            self.w.consume(end)
            out = QEMUFileWriter()
            write_configuration(out, new)
            self.w.send(out.getvalue())

    def _read(self, parse: Callable[[bytes, bool], tuple[_T, int]]) -> tuple[_T, int]:
        """``parse(data, final)`` over the front of the window, with more bytes while it needs them.

        ``data`` is a copy (a decoded record may keep views of it); it grows from what has
        arrived, doubling, until the record fits and a byte after it has arrived too (so a
        footer is not missed), or the source has closed (``final``).
        """
        w = self.w
        cap = _FIRST_GUESS
        while True:
            if w.available == 0:
                w.need(1, "a record")
            m = min(w.available, cap)
            final = w.closed and m == w.available
            with memoryview(w.buf) as view:  # one copy (a slice of buf would be a second)
                data = bytes(view[w.pos : w.pos + m])
            try:
                value, end = parse(data, final)
            except TruncatedStreamError:
                if final:
                    raise
            else:
                if end < m or final:
                    return value, end
            if m < w.available:
                cap *= 2
            elif w.receive():
                cap = max(cap, w.available)

    def _record(self) -> bool:
        """Forward the next record; False after QEMU_VM_EOF."""
        w = self.w
        w.need(1, "a record")
        t = w.peek(1)[0]
        if t in (SectionType.END, SectionType.FULL) and not self._gc_paused and gc.isenabled():
            gc.disable()  # the guest is stopped: no full collection in the downtime
            self._gc_paused = True
        if t in (SectionType.PART, SectionType.END):
            w.need(5, "a section header")
            is_ram = read_section_id(QEMUFileReader(w.peek(5), 1)) == self._ram_id
        else:
            is_ram = False
        if is_ram:
            w.forward(5)
            self._ram()
            self._footer()
            return True
        if t in (SectionType.START, SectionType.FULL):
            w.need(6, "a section header")
            n = w.peek(6)[5]
            w.need(6 + n + 8, "a section header")
            head = QEMUFileReader(w.peek(6 + n + 8), 1)
            section_id = read_section_id(head)
            name, instance_id, _ = read_full_header(head)
            if name == "ram" and instance_id == 0:
                self._ram_id = section_id
                self.reader.opened(
                    Section(SectionKind.START, self._ram_id, "ram", 0, 4, Opaque(b"", "RAM"))
                )
                w.forward(6 + n + 8)
                self._ram()
                self._footer()
                return True
        rec, end = self._read(lambda d, f: self.reader.record(d, 0, final=f))
        if rec is None:  # QEMU_VM_EOF
            w.forward(end)
            return False
        assert self.conversion is not None
        if isinstance(rec, Section):
            self.result.device_sections += 1
            if not isinstance(rec.payload, Opaque):
                self.result.decoded += 1
        out = self.conversion.record(rec)
        self.conversion.check()
        if out is rec:
            w.forward(end)
        else:
            w.consume(end)
            if out is not None:
                buf = QEMUFileWriter()
                write_records([out], buf)
                w.send(buf.getvalue())
        return True

    def _footer(self) -> None:
        w = self.w
        if self.reader.footers is False:
            return
        w.need(1, "a section footer")
        if w.peek(1)[0] == SectionType.FOOTER:
            w.need(FOOTER_SIZE, "a section footer")
            w.forward(FOOTER_SIZE)

    def _trailer(self) -> None:
        """The vmdesc after EOF, rewritten where sections changed; then the rest verbatim."""
        w = self.w
        if w.available == 0 and not w.receive():
            return
        if w.peek(1)[0] == SectionType.VMDESCRIPTION:
            head = VMDESC_HEADER_SIZE
            w.need(head, "the vmdesc header")
            (n,) = _BE32.unpack_from(w.peek(head), 1)
            w.need(head + n, "the vmdesc JSON")
            assert self.conversion is not None
            touched = self.conversion.touched
            if not touched and self._new_config is None:
                w.forward(head + n)
            else:
                raw = w.take(head + n)
                try:
                    vmdesc = json.loads(raw[head:])
                except ValueError:
                    raise MigrationFormatError(
                        "vmdesc trailer is not valid JSON", offset=w.offset - n - head
                    ) from None
                holder = Stream(vmdesc=vmdesc, configuration=self._new_config)
                self.conversion.refresh_vmdesc(holder)
                out = QEMUFileWriter()
                write_vmdesc(out, holder.vmdesc_json())
                w.send(out.getvalue())
        while True:
            w.forward(w.available)
            if not w.receive():
                return

    def _ram(self) -> None:
        """Forward RAM records up to and including EOS; only their framing is parsed."""
        w = self.w
        page = self.page_size
        mask = page - 1
        unpack64 = _BE64.unpack_from
        result = self.result
        run_flags = RAM_PAGE | RAM_CONTINUE
        stride = 8 + page
        self._run_masks = (np.uint64(mask), np.uint64(run_flags))
        while True:
            buf, p = w.buf, w.pos
            start, end = p, w.end
            done = False
            while p + 8 <= end:
                (word,) = unpack64(buf, p)
                flags = word & mask
                if flags == run_flags and end - p >= _MIN_RUN * stride:
                    p = self._page_run(buf, p, (end - p) // stride, stride)
                    continue
                q = p + 8
                if flags & RAM_PAGE_KINDS:
                    if not flags & RAM_CONTINUE:
                        if q >= end or q + 1 + buf[q] > end:
                            break
                        name = bytes(buf[q + 1 : q + 1 + buf[q]])
                        q += 1 + buf[q]
                        block = self._blocks.get(name)
                        if block is None:
                            raise MigrationFormatError(
                                f"RAM record names block {name!r}, which the block list "
                                "does not have",
                                offset=w.offset + (p - start),
                            )
                        self._block = block
                    kind = flags & ~RAM_CONTINUE
                    if kind == RAM_PAGE:
                        q += page
                    elif kind == RAM_ZERO:
                        q += 1
                    elif kind == RAM_XBZRLE:
                        if q + 3 > end:
                            break
                        q += 3 + _BE16.unpack_from(buf, q + 1)[0]
                    elif kind == RAM_COMPRESS_PAGE:
                        if q + 4 > end:
                            break
                        q += 4 + _BE32.unpack_from(buf, q)[0]
                    else:
                        raise MigrationFormatError(
                            f"unknown combination of RAM flags 0x{flags:x}",
                            offset=w.offset + (p - start),
                        )
                    if q > end:
                        break
                    at = self._block << 48 | (word & ~mask)
                    if at <= self._last_page or self._last_page < 0:
                        result.passes += 1
                    self._last_page = at
                    result.pages += 1
                elif flags == RAM_EOS:
                    p = q
                    done = True
                    break
                elif flags == RAM_MEM_SIZE:
                    q = self._block_list(buf, q, end, word & ~mask)
                    if q < 0:
                        break
                elif flags != RAM_MULTIFD_FLUSH:
                    raise MigrationFormatError(
                        f"unknown RAM flags 0x{flags:x}", offset=w.offset + (p - start)
                    )
                p = q
            w.forward(p - start)
            if done:
                return
            w.need(w.available + 1, "a RAM record")

    def _page_run(self, buf: bytearray, p: int, n: int, stride: int) -> int:
        """Count the whole pages at ``p`` that continue the current block, at most ``n``.

        These records (``RAM_PAGE | RAM_CONTINUE``: page word, then the page) are nearly all
        of a RAM-heavy stream and all the same size, so their page words are gathered in
        one strided copy and checked at once instead of one by one.  Returns where the
        first other record (or the first of the ``n`` records not checked) starts; the
        caller goes on from there.
        """
        flag_bits, run_flags = self._run_masks
        # One copy out of buf, byte-swapped on the way (no view of buf may outlive the
        # scan: buf is resized later).
        view = np.ndarray((n,), dtype=_WIRE_WORD, buffer=buf, offset=p, strides=(stride,))
        words = view.astype(np.uint64)
        del view
        other = (words & flag_bits) != run_flags
        k = int(other.argmax())
        if not other[k]:
            k = n
        # A new pass starts where the page addresses start over (as in the scalar loop);
        # the block and the flags are the same all through the run, so whole words compare
        # as their addresses do.
        run = words[:k]
        restarts = int(np.count_nonzero(run[1:] <= run[:-1]))
        block = self._block << 48
        address = ~int(flag_bits) & _U64
        if self._last_page < 0 or block | (int(run[0]) & address) <= self._last_page:
            restarts += 1
        self.result.passes += restarts
        self.result.pages += k
        self._last_page = block | (int(run[-1]) & address)
        return p + k * stride

    def _block_list(self, buf: bytearray, q: int, end: int, total: int) -> int:
        """Read the MEM_SIZE block list at ``q``; its end, or -1 when it is not all here."""
        seen = 0
        blocks: dict[bytes, int] = {}
        while seen < total:
            if q >= end or q + 1 + buf[q] + 8 > end:
                return -1
            n = buf[q]
            name = bytes(buf[q + 1 : q + 1 + n])
            (length,) = _BE64.unpack_from(buf, q + 1 + n)
            q += 1 + n + 8
            if length > total - seen:
                raise MigrationFormatError(
                    f"RAM block {name!r} of {length} bytes overruns the announced total {total}",
                    offset=self.w.offset,
                )
            blocks[name] = len(blocks)
            seen += length
        self._blocks = blocks
        return q
