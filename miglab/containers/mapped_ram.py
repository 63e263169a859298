"""mapped-ram files: QEMU >= 9.0 ``file:`` migration with pages at fixed offsets.

With the ``mapped-ram`` capability (``docs/devel/migration/mapped-ram.rst``,
``migration/ram.c``: ``mapped_ram_setup_ramblock``, ``ram_save_file_bmap``,
``parse_ramblock_mapped_ram``) the RAM section's block list carries, after
each block's ``used_length``, a packed big-endian header::

    be32 version (1)   be64 page_size   be64 bitmap_offset   be64 pages_offset

``bitmap_offset`` is right after that header; the bitmap (one bit per page,
the host's ``unsigned long`` array, little-endian on x86-64) is written
there when the migration completes; ``pages_offset`` is the next 1 MiB
boundary after the bitmap; page *n* of the block lives at ``pages_offset +
n * page_size`` and zero pages are not written at all (the file is sparse).
The sequential stream resumes at ``pages_offset + used_length``.  Offsets
are absolute file positions, including anything before the stream (a
libvirt header: :mod:`miglab.containers.libvirt`).

Reading cuts the page areas out, so the rest is an ordinary stream with the
capability dropped from its configuration block, read by the stream reader;
the set bits of each bitmap become page records in the RAM START section,
whose payloads are views into the file: no page is copied.  The tree is thus
the legacy equivalent of the file (``miglab convert --to legacy`` writes it
as is); :class:`MappedRam` writes any tree -- this one or a sequential
stream's -- back in QEMU's layout, the last copy of each page winning.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from typing import IO, Any

from miglab.errors import MigrationFormatError, TruncatedStreamError
from miglab.files import pwrite, pwritev
from miglab.stream.configuration import CONFIGURATION
from miglab.stream.constants import (
    FILE_MAGIC,
    FILE_VERSION,
    RAM_CONTINUE,
    RAM_MEM_SIZE,
    RAM_PAGE,
    RAM_ZERO,
    RamFlag,
    SectionType,
)
from miglab.stream.model import Section, SectionKind, Stream
from miglab.stream.ram import RamPayload
from miglab.stream.reader import load as load_bare
from miglab.stream.writer import stream_to_bytes
from miglab.visitors.qemufile import QEMUFileReader, QEMUFileWriter
from miglab.visitors.qemufile_visitor import QEMUFileInputVisitor, QEMUFileOutputVisitor
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

__all__ = ("CAPABILITY", "MappedBlock", "MappedRam", "drop_capability", "sniff")

CAPABILITY = "mapped-ram"
HEADER_VERSION = 1
ALIGNMENT = 0x100000  # MAPPED_RAM_FILE_OFFSET_ALIGNMENT
_HEADER = struct.Struct(">IQQQ")
_BE64 = struct.Struct(">Q")
_LONG = 8  # sizeof(unsigned long) on the 64-bit hosts QEMU writes these files on
_CAPS = "configuration/capabilities"
_NOT_PAGES = int(RamFlag.XBZRLE | RamFlag.COMPRESS_PAGE)
_MAX_BLOCKS = 4096


def sniff(view: memoryview) -> bool:
    """Whether ``view`` is a stream whose configuration enables mapped-ram."""
    head = bytes(view[:512])
    return (
        head[:4] == b"QEVM"
        and len(head) > 8
        and head[8] == SectionType.CONFIGURATION
        and b"\x0amapped-ram" in head
    )


@dataclass(frozen=True, slots=True)
class MappedBlock:
    """Where one RAM block's pages are in the file.

    Attributes:
        name: the RAMBlock idstr.
        used_length: bytes of the block.
        page_size: the header's page size.
        header_offset: file offset of the mapped-ram header.
        bitmap_offset: file offset of the page bitmap (0: block not in the file).
        pages_offset: file offset of page 0 (0: block not in the file).
        pages: number of pages present (bits set).
    """

    name: str
    used_length: int
    page_size: int
    header_offset: int
    bitmap_offset: int
    pages_offset: int
    pages: int

    @property
    def bitmap_size(self) -> int:
        """``BITS_TO_LONGS(pages) * sizeof(unsigned long)``."""
        return bitmap_size(self.used_length // self.page_size)


def bitmap_size(num_pages: int) -> int:
    """Bytes of the bitmap of a block of ``num_pages`` pages."""
    return -(-num_pages // (8 * _LONG)) * _LONG


@dataclass(eq=False, slots=True)
class MappedRam:
    """A stream that came as a mapped-ram file.

    Attributes:
        offset: where the stream starts in the file (after a libvirt header).
        blocks: the blocks' places in the file, as read.
    """

    offset: int = 0
    blocks: tuple[MappedBlock, ...] = ()
    name: str = CAPABILITY

    def write_to(self, stream: Stream, out: IO[bytes]) -> None:
        """Write ``stream`` as a mapped-ram file at ``out``'s position."""
        write(stream, out)


# --- reading -------------------------------------------------------------------------------
def load(view: memoryview, start: int = 0, *, schema: Any = None) -> Stream:
    """Read the mapped-ram stream that starts at ``start`` of the file ``view``.

    Raises:
        MigrationFormatError: the layout is invalid; ``offset`` is a file offset.
    """
    layout = _Layout(view, start)
    layout.parse()
    residual, pieces = layout.residual()
    try:
        stream = load_bare(residual, schema=schema)
    except MigrationFormatError as exc:
        offset = None if exc.offset is None else _file_offset(pieces, exc.offset)
        raise type(exc)(exc.message, offset=offset, path=exc.path) from None
    ram = next(
        (s for s in stream.sections if s.name == "ram" and s.kind is SectionKind.START), None
    )
    if ram is None or not isinstance(ram.payload, RamPayload):
        raise MigrationFormatError("mapped-ram stream has no RAM START section", offset=start)
    ram.payload = layout.with_pages(ram.payload)
    stream.container = MappedRam(start, tuple(layout.blocks))
    stream.source_size = len(view)
    return stream


class _Layout:
    """The top of a mapped-ram file: header, configuration, block list, page areas."""

    def __init__(self, view: memoryview, start: int) -> None:
        self.view = view
        self.start = start
        self.blocks: list[MappedBlock] = []
        self.entries: list[tuple[int, int]] = []  # (start, end) of each legacy block entry

    def parse(self) -> None:
        v, start = self.view, self.start
        r = QEMUFileReader(v, start)
        if r.be32("the file magic") != FILE_MAGIC or r.be32("the file version") != FILE_VERSION:
            raise MigrationFormatError("mapped-ram stream lacks the QEVM v3 header", offset=start)
        if r.u8("the configuration block") != SectionType.CONFIGURATION:
            raise MigrationFormatError(
                "mapped-ram stream lacks a configuration block", offset=start + 8
            )
        self.cfg_at = r.pos
        self.config = visit_vmstate(QEMUFileInputVisitor(r), CONFIGURATION)
        self.cfg_end = r.pos
        caps = _capabilities(self.config)
        if CAPABILITY not in caps:
            raise MigrationFormatError(
                "configuration does not enable mapped-ram", offset=self.cfg_at
            )
        ignore_shared = "x-ignore-shared" in caps
        bits = self.config.subsections.get("configuration/target-page-bits")
        page_size = 1 << int(bits.fields["target_page_bits"]) if bits is not None else 4096
        at = r.pos
        if r.u8("the RAM section") != SectionType.START:
            raise MigrationFormatError(
                "mapped-ram stream: expected the RAM START section after the configuration",
                offset=at,
            )
        r.be32("a section id")
        name = r.counted_string("a section idstr")
        inst, ver = r.be32("an instance id"), r.be32("a version id")
        if name != b"ram" or inst != 0 or ver != 4:
            raise MigrationFormatError(
                f"mapped-ram stream: first section is {name!r} v{ver}, expected 'ram' v4", offset=at
            )
        word_at = r.pos
        word = r.be64("the RAM block list")
        if word & (page_size - 1) != RAM_MEM_SIZE:
            raise MigrationFormatError(
                "RAM START does not begin with its block list", offset=word_at
            )
        total = word & ~(page_size - 1)
        self.list_at = r.pos
        seen = 0
        while seen < total:
            if len(self.blocks) >= _MAX_BLOCKS:
                raise MigrationFormatError("RAM block list does not add up", offset=r.pos)
            entry_at = r.pos
            bname = r.counted_string("a RAM block name").decode("utf-8", "surrogateescape")
            length = r.be64("a RAM block length")
            if ignore_shared:
                r.be64("a RAM block address")
            self.entries.append((entry_at, r.pos))
            if length > total - seen:
                raise MigrationFormatError(
                    f"RAM block {bname!r} of {length} bytes overruns the total {total}",
                    offset=entry_at,
                )
            seen += length
            hdr_at = r.pos
            version, psize, bitmap_at, pages_at = r.unpack(_HEADER, "a mapped-ram header")
            self.blocks.append(
                self._block(bname, length, hdr_at, version, psize, bitmap_at, pages_at)
            )
            block = self.blocks[-1]
            if block.pages_offset:
                r.pos = block.pages_offset + block.used_length
        self.after = r.pos

    def _block(
        self,
        name: str,
        length: int,
        at: int,
        version: int,
        psize: int,
        bitmap_at: int,
        pages_at: int,
    ) -> MappedBlock:
        import numpy as np

        where = f"mapped-ram header of block {name!r}"
        if version != HEADER_VERSION:
            raise MigrationFormatError(f"{where}: version {version}, expected 1", offset=at)
        if psize < 512 or psize & (psize - 1) or length % psize:
            raise MigrationFormatError(f"{where}: bad page size {psize}", offset=at + 4)
        if bitmap_at == 0 and pages_at == 0:  # a block QEMU left out of the file
            return MappedBlock(name, length, psize, at, 0, 0, 0)
        size = bitmap_size(length // psize)
        if bitmap_at < at + _HEADER.size or bitmap_at + size > pages_at:
            raise MigrationFormatError(
                f"{where}: bitmap at {bitmap_at} does not fit between the header and the pages",
                offset=at + 12,
            )
        if pages_at + length > len(self.view):
            raise TruncatedStreamError(
                f"{where}: pages at {pages_at} + {length} bytes run past the end of the file",
                offset=at + 20,
            )
        bits = np.unpackbits(
            np.frombuffer(self.view, np.uint8, size, bitmap_at), bitorder="little"
        )[: length // psize]
        return MappedBlock(name, length, psize, at, bitmap_at, pages_at, int(bits.sum()))

    def residual(self) -> tuple[bytes, list[tuple[int, int, int]]]:
        """The stream without page areas or capability, and its (at, file offset, size) pieces."""
        v = self.view
        spans: list[tuple[int, int] | bytes] = [(self.start, self.cfg_at)]
        w = QEMUFileWriter()
        visit_vmstate(QEMUFileOutputVisitor(w), CONFIGURATION, drop_capability(self.config))
        spans += [w.getvalue(), (self.cfg_end, self.list_at)]
        spans += [(a, b) for a, b in self.entries]
        spans.append((self.after, len(v)))
        out = bytearray()
        pieces = []
        for span in spans:
            if isinstance(span, bytes):
                out += span
                continue
            pieces.append((len(out), span[0], span[1] - span[0]))
            out += v[span[0] : span[1]]
        return bytes(out), pieces

    def with_pages(self, ram: RamPayload) -> RamPayload:
        """The RAM START payload with a page record per set bit, viewing the file."""
        import numpy as np

        words, named, block, pos, length = [], [], [], [], []
        by_name = {b.name: i for i, b in enumerate(ram.blocks)}
        for b in self.blocks:
            if not b.pages or b.name not in by_name:
                continue
            n = b.used_length // b.page_size
            bits = np.unpackbits(
                np.frombuffer(self.view, np.uint8, b.bitmap_size, b.bitmap_offset),
                bitorder="little",
            )[:n]
            idx = np.flatnonzero(bits).astype(np.uint64)
            flags = np.full(len(idx), RAM_PAGE | RAM_CONTINUE, np.uint64)
            flags[0] = RAM_PAGE
            words.append(idx * np.uint64(b.page_size) | flags)
            first = np.zeros(len(idx), bool)
            first[0] = True
            named.append(first)
            block.append(np.full(len(idx), by_name[b.name], np.int32))
            pos.append(b.pages_offset + idx.astype(np.int64) * b.page_size)
            length.append(np.full(len(idx), b.page_size, np.int32))
        # The residual's own records (block list, EOS) keep their bytes as overrides,
        # so the payload can view the file instead of the residual copy.
        overrides = {i: bytes(ram.payload(i)) for i in range(len(ram)) if ram.length[i]}
        head = 1  # the block list record comes first; pages go right after it
        k = sum(len(w) for w in words)
        moved = {(i if i < head else i + k): data for i, data in overrides.items()}
        return RamPayload(
            source=self.view,
            page_size=ram.page_size,
            words=np.concatenate([ram.words[:head], *words, ram.words[head:]]),
            named=np.concatenate([ram.named[:head], *named, ram.named[head:]]),
            block=np.concatenate([ram.block[:head], *block, ram.block[head:]]),
            pos=np.concatenate(
                [np.zeros(head, np.int64), *pos, np.zeros(len(ram) - head, np.int64)]
            ),
            length=np.concatenate([ram.length[:head], *length, ram.length[head:]]),
            blocks=ram.blocks,
            block_list=ram.block_list,
            overrides=moved,
        )


def _file_offset(pieces: list[tuple[int, int, int]], at: int) -> int:
    """A residual offset as a file offset (inside a rewritten span: that span's start)."""
    best = pieces[0][1]
    for res, file_at, size in pieces:
        if at < res:
            break
        best = file_at + min(at - res, size)
    return best


# --- the configuration's capability -----------------------------------------------------------
def _capabilities(config: VMState) -> list[str]:
    caps = config.subsections.get(_CAPS)
    return (
        [] if caps is None else [str(c.fields["capability"]) for c in caps.fields["capabilities"]]
    )


def _with_capabilities(config: VMState, names: list[str]) -> VMState:
    """A copy of ``config`` whose capabilities subsection lists ``names`` (none: absent)."""
    desc = CONFIGURATION.subsection_named(_CAPS)
    assert desc is not None and desc.fields[1].struct is not None
    item = desc.fields[1].struct
    subs: dict[str, VMState] = {}
    for sub in CONFIGURATION.subsections:  # QEMU's order, whatever the dict's was
        if sub.name == _CAPS:
            if names:
                subs[_CAPS] = VMState(
                    desc,
                    1,
                    {
                        "caps_count": len(names),
                        "capabilities": [VMState(item, 1, {"capability": n}) for n in names],
                    },
                )
        elif sub.name in config.subsections:
            subs[sub.name] = config.subsections[sub.name]
    return VMState(config.desc, config.version_id, dict(config.fields), subs)


def drop_capability(config: VMState) -> VMState:
    """``config`` without mapped-ram (what a sequential stream's destination expects)."""
    return _with_capabilities(config, [c for c in _capabilities(config) if c != CAPABILITY])


def add_capability(config: VMState) -> VMState:
    """``config`` with mapped-ram (QEMU lists it after x-ignore-shared)."""
    caps = _capabilities(config)
    return config if CAPABILITY in caps else _with_capabilities(config, [*caps, CAPABILITY])


# --- writing -------------------------------------------------------------------------------
def write(stream: Stream, out: IO[bytes]) -> None:
    """Write ``stream`` as a mapped-ram file from ``out``'s position (a seekable file).

    The page image is what a destination would hold after loading the
    stream: per page, the last PAGE record wins and a later ZERO record
    clears it.  Zero pages are left as holes.

    Raises:
        MigrationFormatError: the stream has no configuration block or RAM
            block list, or carries XBZRLE / compressed pages (decode them first).
    """
    import numpy as np

    if stream.configuration is None:
        raise MigrationFormatError(
            "a mapped-ram file needs a configuration block (QEMU >= 2.4 machine)"
        )
    rams = [
        (i, s)
        for i, s in enumerate(stream.records)
        if isinstance(s, Section) and isinstance(s.payload, RamPayload)
    ]
    if not rams or rams[0][1].kind is not SectionKind.START:
        raise MigrationFormatError("a mapped-ram file needs the stream's RAM START section")
    first_i, first = rams[0]
    start_ram = first.payload
    assert isinstance(start_ram, RamPayload)
    if (
        start_ram.block_list is None
        or not len(start_ram)
        or int(start_ram.flags[0]) & ~RAM_CONTINUE != RAM_MEM_SIZE
    ):
        raise MigrationFormatError("the RAM START section does not begin with the block list")
    if stream.ram.ignore_shared:
        raise MigrationFormatError("x-ignore-shared streams are not written as mapped-ram")
    image = _page_image([s.payload for _, s in rams])  # type: ignore[misc]
    records = list(stream.records)
    for i, s in rams:
        assert isinstance(s.payload, RamPayload)
        records[i] = dataclasses.replace(s, payload=_without_pages(s.payload))
    config = add_capability(stream.configuration)
    prefix = Stream(stream.version, config, records[:first_i], eof=False)
    out.write(stream_to_bytes(prefix))
    start_bytes = _records_bytes(records[first_i : first_i + 1])
    head = 1 + 4 + 1 + len(first.name.encode()) + 4 + 4 + 8  # section header, MEM_SIZE word
    start_record = records[first_i]
    assert isinstance(start_record, Section) and isinstance(start_record.payload, RamPayload)
    listed = start_record.payload
    out.write(start_bytes[:head])
    page_size = stream.page_size
    for b_index, blk in enumerate(start_ram.block_list):
        raw = blk.name.encode("utf-8", "surrogateescape")
        out.write(bytes([len(raw)]) + raw + _BE64.pack(blk.used_length))
        bitmap_at = out.tell() + _HEADER.size
        n = blk.used_length // page_size
        pages_at = -(-(bitmap_at + bitmap_size(n)) // ALIGNMENT) * ALIGNMENT
        out.write(_HEADER.pack(HEADER_VERSION, page_size, bitmap_at, pages_at))
        out.flush()
        bits = np.zeros(bitmap_size(n) * 8, np.uint8)
        pages = image.get(b_index, {})
        if pages and max(pages) >= n:
            raise MigrationFormatError(
                f"page {max(pages)} is past the end of RAM block {blk.name!r}"
            )
        _write_pages(out, pages, pages_at, page_size)
        bits[list(pages)] = 1
        pwrite(out, np.packbits(bits, bitorder="little").tobytes(), bitmap_at)
        out.seek(pages_at + blk.used_length)
    out.write(start_bytes[head + len(listed.payload(0)) :])
    out.write(_records_bytes(records[first_i + 1 :], stream))
    out.truncate(out.tell())


_IOV_MAX = 1024


def _write_pages(out: Any, pages: dict[int, Any], pages_at: int, page_size: int) -> None:
    """pwritev each run of consecutive pages (at most IOV_MAX pages a call) to its slot."""
    run: list[Any] = []
    first = prev = -2
    for page in sorted(pages):
        if page != prev + 1 or len(run) == _IOV_MAX:
            if run:
                pwritev(out, run, pages_at + first * page_size)
            run, first = [], page
        run.append(pages[page])
        prev = page
    if run:
        pwritev(out, run, pages_at + first * page_size)


def _records_bytes(records: list[Any], whole: Stream | None = None) -> bytes:
    """The bytes of ``records`` (and, with ``whole``, its EOF, vmdesc and trailer)."""
    tail = Stream(configuration=None, records=records, eof=False)
    if whole is not None:
        tail.eof, tail.vmdesc, tail.trailer = whole.eof, whole.vmdesc, whole.trailer
    return stream_to_bytes(tail)[8:]


def _page_image(payloads: list[RamPayload]) -> dict[int, dict[int, memoryview | bytes]]:
    """block index -> page number -> bytes, for the pages the stream leaves non-zero."""
    import numpy as np

    image: dict[int, dict[int, memoryview | bytes]] = {}
    for p in payloads:
        kinds = p.flags & ~np.uint32(RAM_CONTINUE)
        if (kinds & np.uint32(_NOT_PAGES)).any():
            raise MigrationFormatError(
                "the stream has XBZRLE or compressed pages, which mapped-ram cannot hold"
            )
        pages = (p.offsets // np.uint64(p.page_size)).tolist()
        for i in np.flatnonzero((kinds == RAM_PAGE) | (kinds == RAM_ZERO)).tolist():
            per = image.setdefault(int(p.block[i]), {})
            if kinds[i] == RAM_PAGE:
                per[pages[i]] = p.payload(i)
            else:
                if bytes(p.payload(i)) != b"\0":
                    raise MigrationFormatError("a ZERO page record with a non-zero fill byte")
                per.pop(pages[i], None)
    return image


def _without_pages(p: RamPayload) -> RamPayload:
    """The payload's block list, EOS and flush records, without its page records."""
    import numpy as np

    kinds = p.flags & ~np.uint32(RAM_CONTINUE)
    keep = np.flatnonzero((kinds != RAM_PAGE) & (kinds != RAM_ZERO))
    where = {int(old): new for new, old in enumerate(keep.tolist())}
    return RamPayload(
        source=p.source,
        page_size=p.page_size,
        words=p.words[keep],
        named=p.named[keep],
        block=p.block[keep],
        pos=p.pos[keep],
        length=p.length[keep],
        blocks=p.blocks,
        block_list=p.block_list,
        overrides={where[i]: d for i, d in p.overrides.items() if i in where},
    )
