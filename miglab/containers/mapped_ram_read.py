"""Reading a mapped-ram file: its top parsed, its page areas cut out, its pages as views.

:class:`Layout` parses the header, the configuration (which must enable mapped-ram), the
RAM START section's block list and each block's mapped-ram header and bitmap
(:mod:`~miglab.containers.mapped_ram_format`).  :meth:`Layout.residual` is the rest, an
ordinary stream with the capability dropped, for the stream reader; :meth:`Layout.with_pages`
turns each set bit into a page record whose payload views the file, so no page is copied.
"""

from __future__ import annotations

from miglab.containers.mapped_ram_format import (
    CAPABILITY,
    HEADER,
    HEADER_VERSION,
    MappedBlock,
    bitmap_size,
    capabilities,
    drop_capability,
)
from miglab.errors import MigrationFormatError, TruncatedStreamError
from miglab.stream.configuration import CONFIGURATION
from miglab.stream.ram import RamPayload
from miglab.visitors.qemufile import QEMUFileReader, QEMUFileWriter
from miglab.visitors.qemufile_visitor import QEMUFileInputVisitor, QEMUFileOutputVisitor
from miglab.vmstate.walk import visit_vmstate
from miglab.wire import (
    FILE_MAGIC,
    FILE_VERSION,
    RAM_CONTINUE,
    RAM_MEM_SIZE,
    RAM_PAGE,
    SectionType,
)

__all__ = ("Layout", "file_offset")

_MAX_BLOCKS = 4096


class Layout:
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
        caps = capabilities(self.config)
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
            version, psize, bitmap_at, pages_at = r.unpack(HEADER, "a mapped-ram header")
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
        if bitmap_at < at + HEADER.size or bitmap_at + size > pages_at:
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


def file_offset(pieces: list[tuple[int, int, int]], at: int) -> int:
    """A residual offset as a file offset (inside a rewritten span: that span's start)."""
    best = pieces[0][1]
    for res, file_at, size in pieces:
        if at < res:
            break
        best = file_at + min(at - res, size)
    return best
