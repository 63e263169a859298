"""Synthetic migration streams of any RAM size and page mix, for scale tests and benchmarks.

A synthetic stream follows QEMU's precopy layout (QEMU-FORMAT.md 1.9):
header, configuration block, START ``ram`` (block list, EOS), PART ``ram``
chunks of page records (the block named by the first record, CONTINUE on
the rest, as QEMU does while the block does not change), END ``ram`` (EOS),
one FULL section per device with footers, EOF and a vmdesc trailer that
describes the devices, so :func:`miglab.load` decodes them.

Pages of the one RAM block ``pc.ram`` are of three kinds, shuffled with the
seed in exact proportions:

``zero``      a ZERO record with fill byte 0 (what QEMU sends for an all-zero page);
``random``    a PAGE record of seeded random bytes, different for every page;
``repeated``  a PAGE record of one seeded pattern page shared by all of them
              (QEMU does not deduplicate, so equal pages travel in full).

With ``passes=N`` the RAM is sent as precopy does for a running guest: after
the first pass over every page, each later pass sends again a seeded quarter
of the pages (the ones "dirtied" meanwhile), in address order, the first
record of a pass naming the block.  A page sent again holds what it held, so
:func:`expected_page` is still what every page ends up holding.

:func:`write_synthetic` streams to a file one chunk at a time (memory stays
a few MiB whatever the RAM size); :func:`synthetic_stream` returns the
loaded :class:`~miglab.stream.model.Stream`.  :func:`page_kinds` and
:func:`expected_page` recompute what any page holds, to check a reader.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, cast

import numpy as np

from miglab.errors import MiglabError
from miglab.files import atomic_output
from miglab.stream.configuration import configuration_state
from miglab.stream.framing import (
    write_configuration,
    write_eof,
    write_file_header,
    write_footer,
    write_section_header,
    write_vmdesc,
)
from miglab.stream.model import Stream
from miglab.visitors.qemufile import QEMUFileWriter
from miglab.visitors.qemufile_visitor import QEMUFileOutputVisitor
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate
from miglab.wire import RamFlag, SectionType

__all__ = (
    "KINDS",
    "Device",
    "expected_page",
    "page_kinds",
    "parse_mix",
    "synthetic_stream",
    "write_synthetic",
)

KINDS = ("zero", "random", "repeated")  # page kind codes 0, 1, 2
PAGE_SIZE = 4096
CHUNK_PAGES = 256  # pages per PART section and per random-bytes draw (1 MiB)
DIRTY = 0.25  # share of the pages each pass after the first sends again
RAM_BLOCK = "pc.ram"
Device = (
    VMState | tuple[str, int, VMState]
)  # a state (idstr = vmsd name, instance 0) or (idstr, instance, state)

_RAM_SECTION_ID = 2  # QEMU registers ram after timer and the early devices


def parse_mix(text: str) -> dict[str, float]:
    """``"zero=0.25,random=0.5,repeated=0.25"`` -> a mix mapping (for the CLI)."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, value = part.partition("=")
        try:
            mix[kind.strip()] = float(value) if sep else float("nan")
        except ValueError:
            raise MiglabError(f"page mix {part!r}: expected KIND=FRACTION") from None
    return mix


def page_kinds(pages: int, mix: Mapping[str, float], seed: int) -> np.ndarray:
    """The kind code (index into :data:`KINDS`) of every page, exact counts, seeded order."""
    unknown = set(mix) - set(KINDS)
    if unknown:
        raise MiglabError(f"unknown page kinds {sorted(unknown)}; expected some of {KINDS}")
    weights = np.array([float(mix.get(k, 0.0)) for k in KINDS])
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise MiglabError(
            f"page mix {dict(mix)} must be non-negative fractions with a positive sum"
        )
    counts = np.floor(weights / weights.sum() * pages).astype(np.int64)
    counts[int(np.argmax(weights))] += pages - int(
        counts.sum()
    )  # rounding goes to the largest kind
    kinds = np.repeat(np.arange(len(KINDS), dtype=np.uint8), counts)
    np.random.default_rng([seed, 0]).shuffle(kinds)
    return kinds


def _random_chunk(seed: int, chunk: int, page_size: int) -> bytes:
    return np.random.default_rng([seed, 1, chunk]).bytes(CHUNK_PAGES * page_size)


def _repeated_page(seed: int, page_size: int) -> bytes:
    return np.random.default_rng([seed, 2]).bytes(page_size)


def expected_page(index: int, kind: int, seed: int, page_size: int = PAGE_SIZE) -> bytes:
    """What page ``index`` of ``pc.ram`` holds in a stream made with ``seed``."""
    if KINDS[kind] == "zero":
        return bytes(page_size)
    if KINDS[kind] == "repeated":
        return _repeated_page(seed, page_size)
    chunk, j = divmod(index, CHUNK_PAGES)
    return _random_chunk(seed, chunk, page_size)[j * page_size : (j + 1) * page_size]


def write_synthetic(
    path: str | os.PathLike[str],
    *,
    ram_bytes: int,
    mix: Mapping[str, float] | None = None,
    devices: Sequence[Device] = (),
    seed: int = 0,
    machine: str | None = "pc-q35-7.2",
    page_size: int = PAGE_SIZE,
    passes: int = 1,
) -> Path:
    """Write a synthetic stream to ``path``, one chunk at a time; returns the path."""
    out = Path(path)
    with atomic_output(out) as fh:
        _write(cast(BinaryIO, fh), ram_bytes, mix, devices, seed, machine, page_size, passes)
    return out


def synthetic_stream(
    *,
    ram_bytes: int,
    mix: Mapping[str, float] | None = None,
    devices: Sequence[Device] = (),
    seed: int = 0,
    machine: str | None = "pc-q35-7.2",
    page_size: int = PAGE_SIZE,
    passes: int = 1,
) -> Stream:
    """Build a synthetic stream in memory and load it (see the module docstring).

    Example:
        >>> s = synthetic_stream(ram_bytes=1 << 20, mix={"zero": 0.5, "random": 0.5})
        >>> int(miglab.ram_frame(s)["zero_pages"].sum())
        128
    """
    from miglab.stream.reader import load

    buf = io.BytesIO()
    _write(buf, ram_bytes, mix, devices, seed, machine, page_size, passes)
    return load(buf.getvalue())


def _write(
    fh: BinaryIO,
    ram_bytes: int,
    mix: Mapping[str, float] | None,
    devices: Sequence[Device],
    seed: int,
    machine: str | None,
    page_size: int,
    passes: int = 1,
) -> None:
    if page_size < 1024 or page_size & (page_size - 1):
        raise MiglabError(f"page size {page_size} must be a power of two >= 1024")
    if passes < 1:
        raise MiglabError(f"{passes} RAM passes: there is at least one")
    if ram_bytes <= 0 or ram_bytes % page_size:
        raise MiglabError(f"RAM size {ram_bytes} must be a positive multiple of {page_size}")
    kinds = page_kinds(ram_bytes // page_size, mix or {"random": 1.0}, seed)
    w = QEMUFileWriter(fh)
    write_file_header(w)
    if machine is not None:
        write_configuration(w, configuration_state(machine))
    _ram(w, kinds, seed, page_size, ram_bytes, passes)
    entries = []
    for i, dev in enumerate(devices):
        idstr, instance, state = dev if isinstance(dev, tuple) else (dev.desc.name, 0, dev)
        section_id = _RAM_SECTION_ID + 1 + i
        write_section_header(w, SectionType.FULL, section_id, idstr, instance, state.version_id)
        visit_vmstate(QEMUFileOutputVisitor(w), state.desc, state, state.version_id, idstr)
        write_footer(w, section_id)
        entries.append({"name": idstr, "instance_id": instance, **_vmdesc_struct(state)})
    write_eof(w)
    body = json.dumps({"page_size": page_size, "devices": entries}, separators=(", ", ": "))
    write_vmdesc(w, body.encode())
    w.flush()


def _vmdesc_struct(state: VMState) -> dict:
    from miglab.stream.vmdesc import vmdesc_struct

    return vmdesc_struct(state)


def _ram(
    w: QEMUFileWriter, kinds: np.ndarray, seed: int, page_size: int, ram_bytes: int, passes: int
) -> None:
    # START: the block list (QEMU-FORMAT.md 2.2), then EOS.
    write_section_header(w, SectionType.START, _RAM_SECTION_ID, "ram", 0, 4)
    w.be64(ram_bytes | RamFlag.MEM_SIZE)
    w.counted_string(RAM_BLOCK.encode())
    w.be64(ram_bytes)
    w.be64(RamFlag.EOS)
    write_footer(w, _RAM_SECTION_ID)
    everything = np.arange(len(kinds), dtype=np.int64)
    for n in range(passes):
        if n == 0:
            pages = everything
        else:
            pages = np.flatnonzero(np.random.default_rng([seed, 3, n]).random(len(kinds)) < DIRTY)
        _ram_pass(w, pages, kinds, seed, page_size)
    write_section_header(w, SectionType.END, _RAM_SECTION_ID)
    w.be64(RamFlag.EOS)
    write_footer(w, _RAM_SECTION_ID)


def _ram_pass(
    w: QEMUFileWriter, pages: np.ndarray, kinds: np.ndarray, seed: int, page_size: int
) -> None:
    """PART chunks of CHUNK_PAGES records sending ``pages`` (indices into ``kinds``), in order."""
    repeated = _repeated_page(seed, page_size)
    name = bytes([len(RAM_BLOCK)]) + RAM_BLOCK.encode()
    zero, page, cont = int(RamFlag.ZERO), int(RamFlag.PAGE), int(RamFlag.CONTINUE)
    chunk_of, rand, named = -1, b"", False
    for first in range(0, len(pages), CHUNK_PAGES):
        write_section_header(w, SectionType.PART, _RAM_SECTION_ID)
        for index in pages[first : first + CHUNK_PAGES].tolist():
            kind = int(kinds[index])
            offset = index * page_size
            flags = zero if kind == 0 else page
            if named:
                w.be64(offset | flags | cont)
            else:  # the first record of a pass names the block
                w.be64(offset | flags)
                w.write(name)
                named = True
            if kind == 0:
                w.u8(0)
            elif kind == 1:
                chunk, j = divmod(index, CHUNK_PAGES)
                if chunk != chunk_of:  # random bytes are drawn a chunk of pages at a time
                    chunk_of, rand = chunk, _random_chunk(seed, chunk, page_size)
                w.write(rand[j * page_size : (j + 1) * page_size])
            else:
                w.write(repeated)
        w.be64(RamFlag.EOS)
        write_footer(w, _RAM_SECTION_ID)
