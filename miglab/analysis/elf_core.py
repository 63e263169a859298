"""Guest RAM of a stream as an ELF core file, at the guest-physical addresses of its machine.

``gdb``, ``crash`` and ``drgn`` read a core's memory through its program headers: one
``PT_LOAD`` per range of guest-physical memory, ``p_paddr`` its guest-physical address.
A migration stream has no physical map, only RAM blocks; where ``pc.ram`` appears in the
guest's physical address space is decided by the machine type, as QEMU's x86 PC boards
split it around the 32-bit PCI hole:

* q35 (``hw/i386/pc_q35.c``, ``pc_q35_init``): with 2.75 GiB of RAM or more, the first
  2 GiB stay below 4 GiB, else all of it (up to 2.75 GiB);
* i440fx (``hw/i386/pc_piix.c``, ``pc_init1``): with 3.5 GiB or more, the first 3 GiB
  (``gigabyte_align``, every machine type after pc-1.7), else all of it;
* the rest of ``pc.ram`` is mapped at 4 GiB (``hw/i386/pc.c``, ``pc_memory_init``:
  ``ram-above-4g``).

Assumed, because the stream does not record it: the default ``max-ram-below-4g`` and no
AMD 1 TiB relocation (``enforce_amd_1tb_hole`` with an AMD CPU model).  Only ``pc.ram`` is
written (ROM, VGA and option-ROM blocks have no fixed physical home in the stream); the
legacy VGA/BIOS window at 640 KiB..1 MiB is written as the RAM under it.  Zero pages are
holes in the file, so the core is as sparse as the guest's memory.

Example:
    >>> from miglab.analysis.elf_core import physical_ranges
    >>> physical_ranges("pc-q35-7.2", 4 << 30)
    [(0, 0, 2147483648), (4294967296, 2147483648, 2147483648)]
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING

from miglab.errors import MiglabError

if TYPE_CHECKING:
    from miglab.stream.model import Stream
    from miglab.stream.progress import Progress

__all__ = ("export_elf", "physical_ranges")

_GiB = 1 << 30
_ABOVE_4G = 4 * _GiB
_RAM = "pc.ram"
_PROGRESS_MASK = (1 << 24) - 1  # tell progress every 16 MiB of RAM
# (machine family, RAM size from which the split applies, RAM left below 4 GiB then, the
# most RAM below 4 GiB otherwise): pc_q35_init and pc_init1.
_SPLITS = {"q35": (0xB0000000, 0x80000000), "i440fx": (0xE0000000, 0xC0000000)}
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")  # Elf64_Ehdr
_PHDR = struct.Struct("<IIQQQQQQ")  # Elf64_Phdr
_ET_CORE, _EM_X86_64, _PT_LOAD, _PF_RWX = 4, 62, 1, 7
_IDENT = b"\x7fELF\x02\x01\x01" + bytes(9)  # 64-bit, little-endian, ELF version 1


def _family(machine: str) -> str:
    if "q35" in machine:
        return "q35"
    if machine.startswith("pc-i440fx") or machine == "pc":
        return "i440fx"
    raise MiglabError(f"no guest-physical layout known for machine {machine!r} (x86 pc/q35 only)")


def physical_ranges(machine: str, ram_size: int) -> list[tuple[int, int, int]]:
    """``(guest-physical address, offset in pc.ram, length)`` of each piece of ``pc.ram``."""
    threshold, split = _SPLITS[_family(machine)]
    below = split if ram_size >= threshold else ram_size
    ranges = [(0, 0, below)]
    if ram_size > below:
        ranges.append((_ABOVE_4G, below, ram_size - below))
    return ranges


def export_elf(
    stream: Stream, path: str | os.PathLike[str], *, progress: Progress | None = None
) -> int:
    """Write ``stream``'s ``pc.ram`` as an ELF core at ``path`` (atomically); returns its size.

    ``progress`` is told how far the write is (phase ``"writing"``), counted like the
    other calls in bytes of the input stream (:mod:`miglab.stream.progress`): the share of
    guest RAM written, scaled to the stream's size.

    Raises:
        MiglabError: the stream has no machine type, no ``pc.ram``, or a machine whose
            physical layout is not known.
    """
    from miglab.files import atomic_output
    from miglab.stream.pages import RamPages

    if stream.machine is None:
        raise MiglabError("the stream names no machine type: its physical layout is unknown")
    blocks = {b.name: b for b in stream.ram.blocks}
    if _RAM not in blocks:
        raise MiglabError(f"the stream has no {_RAM} block (blocks: {', '.join(blocks)})")
    ram = RamPages(stream).block_bytes(_RAM)
    ranges = physical_ranges(stream.machine, len(ram))
    page = stream.page_size
    first = -(-(_EHDR.size + _PHDR.size * len(ranges)) // page) * page
    head = _EHDR.pack(
        _IDENT, _ET_CORE, _EM_X86_64, 1, 0, _EHDR.size, 0, 0,
        _EHDR.size, _PHDR.size, len(ranges), 0, 0, 0,
    )  # fmt: skip
    offset = first
    for phys, _, length in ranges:
        head += _PHDR.pack(_PT_LOAD, _PF_RWX, offset, phys, phys, length, length, page)
        offset += length
    view = memoryview(ram)
    zero = bytes(page)
    total = stream.source_size or len(ram)
    with atomic_output(path, input_bytes=stream.source_size or None) as out:
        out.write(head)
        at = first
        for _, start, length in ranges:
            for n in range(start, start + length, page):
                chunk = view[n : n + page]
                if chunk != zero:  # zero pages stay holes
                    out.seek(at + n - start)
                    out.write(chunk)
                if progress is not None and not n & _PROGRESS_MASK:
                    progress("writing", n * total // len(ram), total)
            at += length
        out.truncate(offset)
    if progress is not None:
        progress("writing", total, total)
    return offset
