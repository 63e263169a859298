"""Write a qcow2 image whose snapshot holds a new VM state.

The image is copied whole (into a new file, or into a temporary file that
replaces the image with ``in_place=True``), then the new state is appended
in fresh clusters: its data clusters, L2 tables for the VM state region, a
new L1 table for the snapshot (the disk entries copied, so the disk is the
snapshot's own), and a new snapshot table with the entry's sizes updated.
The old L1 table, snapshot table and VM state clusters lose their reference
(freed when no other table uses them), and every change is counted in the
refcount blocks, so ``qemu-img check`` finds neither leaks nor corruption.
Nothing else in the copy changes; the header's snapshot table pointer is
written last.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol, cast

from miglab.containers._files import copy_file, scratch_file, scratch_view
from miglab.containers.qcow2_format import (
    COMPRESSED,
    COPIED,
    OFFSET_MASK,
    Header,
    Snapshot,
    l1_table,
)
from miglab.errors import MiglabError
from miglab.files import OutputFile, atomic_output

if TYPE_CHECKING:
    from miglab.stream.model import Stream

__all__ = ("write_image",)

_SNAP = struct.Struct(">QIHHIIQII")
_DIRTY = 1


class SnapshotImage(Protocol):
    """What :func:`write_image` reads of a snapshot read from an image
    (:class:`~miglab.containers.qcow2.Qcow2Snapshot`)."""

    header: Header
    image: memoryview
    snapshot: Snapshot
    source: Path | None


def write_image(info: SnapshotImage, stream: Stream, path: Path, *, in_place: bool) -> None:
    """Write ``info.image`` to ``path`` with the snapshot's VM state replaced by ``stream``."""
    from miglab.stream.writer import write_to

    h = info.header
    if h.incompatible & _DIRTY:
        raise MiglabError("qcow2 image is dirty (lazy refcounts): run qemu-img check -r all first")
    if 1 << h.refcount_order < 8:
        raise MiglabError(f"qcow2 refcount width {1 << h.refcount_order} bits is not supported")
    if not in_place and info.source is not None and path.exists() and path.samefile(info.source):
        raise MiglabError(f"{path} is the image read; pass in_place=True to replace it")
    if in_place and (info.source is None or not path.exists() or not path.samefile(info.source)):
        raise MiglabError(f"in_place=True writes only over the image read, not {path}")
    with scratch_file() as state_file:
        write_to(stream, cast(BinaryIO, state_file))
        state = scratch_view(state_file)
        with atomic_output(path, input_bytes=len(info.image) + stream.source_size) as out:
            copy_file(info.image, out)
            _Appender(out, h, info.image, info.snapshot).append(state)


class _Appender:
    """Appends clusters to the copy and keeps its refcounts right."""

    def __init__(self, out: OutputFile, h: Header, image: memoryview, snap: Snapshot) -> None:
        self.out, self.h, self.image, self.snap = out, h, image, snap
        self.cs = h.cluster_size
        self.next = -(-os.fstat(out.fileno()).st_size // self.cs) * self.cs
        self.bits = 1 << h.refcount_order
        self.per_block = self.cs * 8 // self.bits
        self.table = list(
            struct.unpack_from(
                f">{h.refcount_table_clusters * self.cs // 8}Q", image, h.refcount_table_offset
            )
        )
        self.blocks: dict[int, bytearray] = {}
        self.delta: dict[int, int] = {}

    # --- clusters ------------------------------------------------------------
    def alloc(self) -> int:
        at = self.next
        self.next += self.cs
        self.delta[at // self.cs] = self.delta.get(at // self.cs, 0) + 1
        return at

    def release(self, offset: int) -> int:
        """Drop one reference to the cluster at ``offset``; return its new refcount."""
        index = offset // self.cs
        self.delta[index] = self.delta.get(index, 0) - 1
        return self.refcount(index) + self.delta[index]

    def refcount(self, index: int) -> int:
        block = self._block(index // self.per_block)
        if block is None:
            return 0
        return self._get(block, index % self.per_block)

    def _block(self, bi: int) -> bytearray | None:
        if bi in self.blocks:
            return self.blocks[bi]
        if bi >= len(self.table):
            return None
        off = self.table[bi] & OFFSET_MASK
        if not off:
            return None
        self.blocks[bi] = bytearray(self.image[off : off + self.cs])
        return self.blocks[bi]

    def _get(self, block: bytearray, i: int) -> int:
        n = self.bits // 8
        return int.from_bytes(block[i * n : (i + 1) * n], "big")

    def _set(self, block: bytearray, i: int, value: int) -> None:
        n = self.bits // 8
        if not 0 <= value < 1 << self.bits:
            raise MiglabError(f"qcow2 refcount {value} out of range (image refcounts inconsistent)")
        block[i * n : (i + 1) * n] = value.to_bytes(n, "big")

    # --- the new VM state -------------------------------------------------------
    def append(self, state: memoryview) -> None:
        h, snap, cs = self.h, self.snap, self.cs
        per_l2 = h.l2_entries
        start = h.vm_state_offset(snap.disk_size)
        first = start // cs // per_l2
        clusters = -(-len(state) // cs)
        l1 = l1_table(self.image, snap.l1_table_offset, snap.l1_size)
        needed = first + max(1, -(-clusters // per_l2))
        new_l1 = l1 + [0] * max(0, needed - len(l1))
        for i in range(first, len(l1)):  # the old VM state's tables and clusters
            self._drop_l2(l1[i])
            new_l1[i] = 0
        l2s: dict[int, list[int]] = {}
        for c in range(clusters):
            data = state[c * cs : (c + 1) * cs]
            if not any(data):
                continue  # unallocated clusters read as zeros
            at = self.alloc()
            self.out.pwrite(bytes(data).ljust(cs, b"\0"), at)
            li, l2i = divmod(start // cs + c, per_l2)
            l2s.setdefault(li, [0] * per_l2)[l2i] = at | COPIED
        for li, entries in l2s.items():
            at = self.alloc()
            self.out.pwrite(struct.pack(f">{per_l2}Q", *entries), at)
            new_l1[li] = at | COPIED
        l1_bytes = struct.pack(f">{len(new_l1)}Q", *new_l1)
        l1_at = self._alloc_bytes(l1_bytes)
        for c in range(-(-snap.l1_size * 8 // cs)):
            self.release(snap.l1_table_offset + c * cs)
        table = self._snapshot_table(l1_at, len(new_l1), len(state))
        table_at = self._alloc_bytes(table)
        for c in range(-(-self._old_table_size() // cs)):
            self.release(h.snapshots_offset + c * cs)
        self._commit_refcounts()
        self._fix_copied_flags()
        self.out.pwrite(struct.pack(">Q", table_at), 64)  # snapshots_offset, last

    def _fix_copied_flags(self) -> None:
        """Keep QCOW_OFLAG_COPIED of the active tables equal to "refcount is 1".

        An L2 table or cluster the old VM state shared with the active image
        may now be the active image's alone; QEMU (and ``qemu-img check``)
        expect the flag set exactly then.
        """
        h = self.h
        touched = {i * self.cs for i in self.delta}
        for i, entry in enumerate(l1_table(self.image, h.l1_table_offset, h.l1_size)):
            l2 = entry & OFFSET_MASK
            if not l2:
                continue
            alone = self.refcount(l2 // self.cs) == 1
            if alone != bool(entry & COPIED):
                fixed = (entry & ~COPIED) | (COPIED if alone else 0)
                self.out.pwrite(struct.pack(">Q", fixed), h.l1_table_offset + 8 * i)
            if not alone:
                continue
            for j, e in enumerate(struct.unpack_from(f">{h.l2_entries}Q", self.image, l2)):
                data = e & OFFSET_MASK
                if not data or e & COMPRESSED or data not in touched:
                    continue
                want = self.refcount(data // self.cs) == 1
                if want != bool(e & COPIED):
                    fixed = (e & ~COPIED) | (COPIED if want else 0)
                    self.out.pwrite(struct.pack(">Q", fixed), l2 + 8 * j)

    def _drop_l2(self, entry: int) -> None:
        """Drop one L1 table's path to an L2 table and, through it, to its clusters.

        qcow2 counts a data cluster once per L1 table that reaches it (as
        ``qemu-img check`` does), so its refcount drops even when the L2
        table stays in use by another table.
        """
        l2 = entry & OFFSET_MASK
        if not l2:
            return
        self.release(l2)
        for e in struct.unpack_from(f">{self.h.l2_entries}Q", self.image, l2):
            if e & COMPRESSED:
                raise MiglabError("the old VM state has compressed clusters; not supported")
            if e & OFFSET_MASK:
                self.release(e & OFFSET_MASK)

    def _alloc_bytes(self, data: bytes) -> int:
        """Allocate consecutive clusters for ``data``, write it there, return the first."""
        clusters = max(1, -(-len(data) // self.cs))
        first = self.next
        for _ in range(clusters):
            self.alloc()
        self.out.pwrite(data.ljust(clusters * self.cs, b"\0"), first)
        return first

    def _old_table_size(self) -> int:
        end = self.h.snapshots_offset
        for _ in range(self.h.nb_snapshots):
            _, _, id_len, name_len, *_rest, extra = _SNAP.unpack_from(self.image, end)
            size = _SNAP.size + extra + id_len + name_len
            end += size + (-size % 8)
        return end - self.h.snapshots_offset

    def _snapshot_table(self, l1_at: int, l1_size: int, vm_size: int) -> bytes:
        out = bytearray()
        pos = self.h.snapshots_offset
        for _ in range(self.h.nb_snapshots):
            _, _, id_len, name_len, *_rest, extra = _SNAP.unpack_from(self.image, pos)
            size = _SNAP.size + extra + id_len + name_len
            size += -size % 8
            entry = bytearray(self.image[pos : pos + size])
            if pos == self.snap.offset:
                struct.pack_into(">QI", entry, 0, l1_at, l1_size)
                struct.pack_into(">I", entry, 32, vm_size & 0xFFFFFFFF)
                if extra >= 8:
                    struct.pack_into(">Q", entry, _SNAP.size, vm_size)
            out += entry
            pos += size
        return bytes(out)

    def _commit_refcounts(self) -> None:
        """Apply the counted changes; new refcount blocks are allocated as needed."""
        while True:
            missing = sorted(
                {
                    i // self.per_block
                    for i in self.delta
                    if self._block(i // self.per_block) is None
                }
            )
            if not missing:
                break
            for bi in missing:
                if bi >= len(self.table):
                    raise MiglabError("the image would need a larger refcount table; not supported")
                at = self.alloc()
                self.table[bi] = at
                self.blocks[bi] = bytearray(self.cs)
                self.out.pwrite(struct.pack(">Q", at), self.h.refcount_table_offset + 8 * bi)
        for index, d in sorted(self.delta.items()):
            block = self._block(index // self.per_block)
            assert block is not None
            self._set(block, index % self.per_block, self._get(block, index % self.per_block) + d)
        for bi, block in self.blocks.items():
            self.out.pwrite(bytes(block), self.table[bi] & OFFSET_MASK)
