"""The parts of the qcow2 format a VM state lives in: header, snapshot table, L1/L2.

From QEMU's ``docs/interop/qcow2.txt`` and ``block/qcow2.h``; all integers
big-endian.  A ``savevm`` snapshot's VM state sits in the image's guest
address space beyond the disk, at ``l1_vm_state_index << (cluster_bits +
l2_bits)`` with ``l1_vm_state_index = ceil(disk_size / (cluster_size *
l2_entries))`` (``size_to_l1``), and is reached through the snapshot's own L1
table: QEMU discards those clusters from the active table once the snapshot
is taken.  This module only reads; :mod:`miglab.containers.qcow2_write` adds
a snapshot's new VM state.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from miglab.errors import LimitExceeded, MigrationFormatError, TruncatedStreamError
from miglab.limits import LIMITS

__all__ = (
    "Header",
    "Snapshot",
    "check_refcount_blocks",
    "read_header",
    "read_snapshots",
    "vm_state_clusters",
)

MAGIC = b"QFI\xfb"
OFFSET_MASK = 0x00FFFFFFFFFFFE00  # L1/L2 entry bits 9-55
_REFT_OFFSET_MASK = 0xFFFFFFFFFFFFFE00  # refcount table entry: bits 0-8 reserved
COPIED = 1 << 63
COMPRESSED = 1 << 62
ZERO = 1  # L2 entry bit 0 (version 3): reads as zeros
_INCOMPAT_DIRTY, _INCOMPAT_CORRUPT, _INCOMPAT_DATA_FILE, _INCOMPAT_EXTL2 = 1, 2, 4, 16
_SNAP = struct.Struct(">QIHHIIQII")
_EXTRA = struct.Struct(">QQ")  # vm_state_size_large, disk_size


@dataclass(frozen=True, slots=True)
class Header:
    """The qcow2 header fields miglab uses."""

    version: int
    cluster_bits: int
    size: int
    l1_size: int
    l1_table_offset: int
    refcount_table_offset: int
    refcount_table_clusters: int
    nb_snapshots: int
    snapshots_offset: int
    incompatible: int
    refcount_order: int
    header_length: int

    @property
    def cluster_size(self) -> int:
        """Bytes per cluster."""
        return 1 << self.cluster_bits

    @property
    def l2_entries(self) -> int:
        """Entries per L2 table (no extended L2)."""
        return self.cluster_size // 8

    def vm_state_offset(self, disk_size: int) -> int:
        """``qcow2_vm_state_offset`` for an image of ``disk_size`` bytes."""
        shift = self.cluster_bits + self.cluster_bits - 3
        index = (disk_size + (1 << shift) - 1) >> shift
        return index << shift


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One internal snapshot (an entry of the snapshot table).

    Attributes:
        id: the id string (``"1"``).
        name: the name given to ``savevm``.
        l1_table_offset: file offset of the snapshot's L1 table.
        l1_size: entries of it.
        date_sec, date_nsec: when it was taken.
        vm_clock_nsec: the guest clock then.
        vm_state_size: bytes of VM state (the 64-bit extra field when present).
        disk_size: the disk size at the snapshot (extra data; else the image size).
        extra: the extra data, verbatim.
        offset: file offset of the entry.
        entry_size: bytes of the entry, padding included.
    """

    id: str
    name: str
    l1_table_offset: int
    l1_size: int
    date_sec: int
    date_nsec: int
    vm_clock_nsec: int
    vm_state_size: int
    disk_size: int
    extra: bytes
    offset: int
    entry_size: int


def read_header(view: memoryview) -> Header:
    """Parse and check the header.

    Raises:
        MigrationFormatError: not a usable qcow2 (bad magic, version, cluster
            size), or a feature miglab cannot read (extended L2, external data
            file, encryption); ``offset`` points at the field.
    """
    if len(view) < 72:
        raise TruncatedStreamError("qcow2 image ends inside its header", offset=len(view))
    if bytes(view[:4]) != MAGIC:
        raise MigrationFormatError("not a qcow2 image (magic is not QFI\\xfb)", offset=0)
    (version,) = struct.unpack_from(">I", view, 4)
    if version not in (2, 3):
        raise MigrationFormatError(f"qcow2 version {version}, expected 2 or 3", offset=4)
    cluster_bits, size, crypt, l1_size, l1_off, rt_off, rt_clusters, nb, snap_off = (
        struct.unpack_from(">IQIIQQIIQ", view, 20)
    )
    if not 9 <= cluster_bits <= 21:
        raise MigrationFormatError(f"qcow2 cluster_bits {cluster_bits} outside 9..21", offset=20)
    if crypt:
        raise MigrationFormatError("encrypted qcow2 images are not supported", offset=32)
    incompatible, refcount_order, header_length = 0, 4, 72
    if version == 3:
        if len(view) < 104:
            raise TruncatedStreamError("qcow2 image ends inside its v3 header", offset=len(view))
        (incompatible,) = struct.unpack_from(">Q", view, 72)
        refcount_order, header_length = struct.unpack_from(">II", view, 96)
        if incompatible & _INCOMPAT_EXTL2:
            raise MigrationFormatError("qcow2 extended L2 entries are not supported", offset=72)
        if incompatible & _INCOMPAT_DATA_FILE:
            raise MigrationFormatError(
                "qcow2 with an external data file has no VM state", offset=72
            )
        if incompatible & _INCOMPAT_CORRUPT:
            raise MigrationFormatError("qcow2 image is marked corrupt", offset=72)
        if refcount_order > 6:
            raise MigrationFormatError(f"qcow2 refcount_order {refcount_order} > 6", offset=96)
    if nb > LIMITS.max_snapshots:
        raise LimitExceeded(f"{nb} snapshots exceed LIMITS.max_snapshots", offset=60)
    return Header(
        version,
        cluster_bits,
        size,
        l1_size,
        l1_off,
        rt_off,
        rt_clusters,
        nb,
        snap_off,
        incompatible,
        refcount_order,
        header_length,
    )


def read_snapshots(view: memoryview, h: Header) -> list[Snapshot]:
    """The snapshot table, in file order."""
    out: list[Snapshot] = []
    pos = h.snapshots_offset
    for _ in range(h.nb_snapshots):
        at = pos
        if pos + _SNAP.size > len(view):
            raise TruncatedStreamError("qcow2 snapshot table runs past the end", offset=pos)
        l1_off, l1_size, id_len, name_len, dsec, dnsec, clock, vm32, extra_len = _SNAP.unpack_from(
            view, pos
        )
        pos += _SNAP.size
        end = pos + extra_len + id_len + name_len
        if extra_len > 1024 or end > len(view):
            raise MigrationFormatError("qcow2 snapshot entry runs past the end", offset=at)
        extra = bytes(view[pos : pos + extra_len])
        pos += extra_len
        vm_size, disk_size = vm32, h.size
        if extra_len >= 8:
            (vm_size,) = struct.unpack_from(">Q", extra, 0)
        if extra_len >= 16:
            (disk_size,) = struct.unpack_from(">Q", extra, 8)
        ident = bytes(view[pos : pos + id_len]).decode("utf-8", "replace")
        name = bytes(view[pos + id_len : end]).decode("utf-8", "replace")
        pos = end + (-(end - at) % 8)
        if l1_off % h.cluster_size or l1_size * 8 > len(view):
            raise MigrationFormatError(
                f"qcow2 snapshot {name!r}: L1 table at {l1_off} ({l1_size} entries) is invalid",
                offset=at,
            )
        out.append(
            Snapshot(
                ident,
                name,
                l1_off,
                l1_size,
                dsec,
                dnsec,
                clock,
                vm_size,
                disk_size,
                extra,
                at,
                pos - at,
            )
        )
    return out


def check_refcount_blocks(view: memoryview, h: Header) -> None:
    """The refcount table lies in the file, and so does every refcount block it points to.

    Reading a VM state needs neither, but QEMU writes them whole (metadata clusters), so an
    image cut short inside them is truncated, not a whole image that merely ends early.

    Raises:
        TruncatedStreamError: the table or a block runs past the end (offset: its entry).
    """
    import numpy as np

    cs = h.cluster_size
    end = h.refcount_table_offset + h.refcount_table_clusters * cs
    if end > len(view):
        raise TruncatedStreamError(
            f"qcow2 refcount table at {h.refcount_table_offset} runs past the end", offset=48
        )
    table = np.frombuffer(view[h.refcount_table_offset : end], ">u8") & _REFT_OFFSET_MASK
    past = np.flatnonzero((table != 0) & (table > len(view) - cs))
    if past.size:
        i = int(past[0])
        raise TruncatedStreamError(
            f"qcow2 refcount block at {int(table[i])} runs past the end of the image",
            offset=h.refcount_table_offset + 8 * i,
        )


def l1_table(view: memoryview, offset: int, size: int) -> list[int]:
    """The entries of an L1 table."""
    if offset + size * 8 > len(view):
        raise TruncatedStreamError(f"qcow2 L1 table at {offset} runs past the end", offset=offset)
    return list(struct.unpack_from(f">{size}Q", view, offset))


def vm_state_clusters(view: memoryview, h: Header, snap: Snapshot) -> list[tuple[int, int]]:
    """(guest offset inside the VM state, host offset) of each allocated VM state cluster.

    Clusters not listed read as zeros.  The walk visits only L2 tables that
    exist in the file, so its cost is bounded by the image's size whatever
    the entry claims.

    Raises:
        MigrationFormatError: a VM state larger than the snapshot's L1 table
            can address, a compressed cluster, or an L2 table or cluster
            outside the file; ``offset`` is the entry's file offset.
    """
    cs = h.cluster_size
    per_l2 = h.l2_entries
    start = h.vm_state_offset(snap.disk_size)
    first = start // cs // per_l2
    l1 = l1_table(view, snap.l1_table_offset, snap.l1_size)
    room = max(0, len(l1) - first) * per_l2 * cs
    if snap.vm_state_size > min(room, LIMITS.max_decompressed_bytes):
        raise MigrationFormatError(
            f"qcow2 snapshot {snap.name!r}: VM state of {snap.vm_state_size} bytes exceeds "
            f"the {room} bytes its L1 table addresses (or LIMITS.max_decompressed_bytes)",
            offset=snap.offset + 32,
        )
    clusters = -(-snap.vm_state_size // cs)
    out: list[tuple[int, int]] = []
    for l1_index in range(first, len(l1)):
        base = (l1_index - first) * per_l2  # VM state cluster number of this table's entry 0
        if base >= clusters:
            break
        l2_off = l1[l1_index] & OFFSET_MASK
        if not l2_off:
            continue
        if l2_off % cs or l2_off + cs > len(view):
            raise MigrationFormatError(
                f"qcow2 L2 table at {l2_off} is outside the file or unaligned",
                offset=snap.l1_table_offset + 8 * l1_index,
            )
        entries = struct.unpack_from(f">{per_l2}Q", view, l2_off)
        for l2_index in range(min(per_l2, clusters - base)):
            entry = entries[l2_index]
            entry_at = l2_off + 8 * l2_index
            if entry & COMPRESSED:
                raise MigrationFormatError(
                    "qcow2 VM state cluster is compressed, which miglab does not read",
                    offset=entry_at,
                )
            host = entry & OFFSET_MASK
            if not host or entry & ZERO:
                continue
            if host % cs or host >= len(view):
                raise MigrationFormatError(
                    f"qcow2 VM state cluster at {host} is outside the file", offset=entry_at
                )
            out.append(((base + l2_index) * cs, host))
    return out
