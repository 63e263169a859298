"""``verify``'s checks of section headers against how QEMU numbers them.

A stream without vmdesc and footers (pc <= 2.2) says little about its
undescribed sections, yet their headers still carry a name and two numberings
that QEMU's ``savevm.c`` fixes at registration, and a corrupted header breaks:

* **idstrs** are vmsd names, after a device path: printable ASCII.

* **instance ids.** A handler registered with ``VMSTATE_INSTANCE_ID_ANY``
  gets ``calculate_new_instance_id``: one more than the highest instance of
  the same idstr, so the instances of one idstr are 0..n-1.  The explicit ids
  are ``ram``, ``timer``, ``globalstate``, ``acpi_build`` (0), the CPU's
  ``cpu_common`` and ``cpu`` (``cpu_index``, 0..n-1 for the CPUs a machine
  starts with) and the ``apic`` (``initial_apic_id``, which the topology may
  leave with gaps, so only "one per CPU, and CPU 0's is 0" holds for it).
  The loader looks a section up by idstr and instance (``find_se``), so a
  number nothing was registered with is refused by QEMU too.
* **section ids.** ``global_section_id++`` at registration; the handler list
  is ordered by priority (``savevm_state_handler_insert``, ``MIG_PRI_*``) and
  by registration within one priority.  So the FULL sections' ids increase
  in stream order, except after the leading sections of higher priority
  classes (and before a MIG_PRI_LOW one).

* **the RAM end marker.** Each RAM section ends with the word
  ``RAM_SAVE_FLAG_EOS`` written as a constant (``ram.c``), its address bits
  zero; the loader reads only its flags, so a flip in the address loads.

A hot-unplugged device can leave a gap in its idstr's instances; the
finding says so.  What the numbering cannot show (an id turned into another
one QEMU could have given) is in docs/hostile-input.md.
"""

from __future__ import annotations

import mmap
import struct
from collections import defaultdict
from collections.abc import Iterator
from itertools import pairwise

from miglab.findings import ERROR, Finding
from miglab.stream.framing import FOOTER_SIZE
from miglab.stream.model import Section, SectionKind, Stream
from miglab.stream.ram import RamPayload
from miglab.stream.ram_records import RELEASE_EVERY, release_pages
from miglab.wire import RAM_EOS

__all__ = ("check_numbering",)

_BE64 = struct.Struct(">Q")
_READ_AROUND = 1 << 20  # what reading a word maps of the pages before it (fault-around)

# Registered with initial_apic_id (hw/intc/apic_common.c): gaps are the topology's.
_APIC = "apic"
# Registered with cpu_index (hw/core/cpu-system.c cpu_vmstate_register).
_CPU = ("cpu", "cpu_common")
# vmsd names with a .priority above MIG_PRI_DEFAULT (include/migration/vmstate.h
# and the devices that set it): after one of these, the section ids may start lower.
_PRIORITY_VMSDS = frozenset(
    {
        "apic",
        "amd-iommu",
        "iommu-intel",
        "virtio-iommu",
        "virtio-mem-device",
        "virtio-mem-device-early",
        "pci_bridge",
        "pcie-root-port",
        "ioh-3240-express-root-port",
        "i82801b11_bridge",
        "xio3130-express-downstream-port",
        "xio3130-express-upstream-port",
        "pcie-pci-bridge",
        "arm_gicv3",
        "arm_gicv3_its",
        "smmuv3",
    }
)


# ... and below it (MIG_PRI_LOW): sent after the default class, so its id may be lower.
_LOW_PRIORITY_VMSDS = frozenset({"vfio-container"})


def check_numbering(stream: Stream) -> Iterator[Finding]:
    """Idstrs, instance ids and section ids that QEMU's registration could not have given."""
    full = [s for s in stream.sections if s.kind.has_full_header]
    yield from _names(full)
    yield from _instances(full)
    yield from _section_order([s for s in full if s.kind is SectionKind.FULL])
    yield from _eos_words(stream)


def _names(sections: list[Section]) -> Iterator[Finding]:
    # An idstr is a vmsd name after an optional device path (vmstate_if_get_id): printable
    # ASCII.  QEMU reads it into a C string, so a NUL would even end it early.
    for s in sections:
        if not all(32 < ord(c) < 127 for c in s.name):
            yield Finding(
                ERROR,
                "section-name",
                f"section id {s.section_id} has idstr {s.name!r}: QEMU's idstrs are vmsd names "
                "and device paths, printable ASCII",
                offset=s.offset,
            )


def _instances(sections: list[Section]) -> Iterator[Finding]:
    first: dict[str, dict[int, Section]] = defaultdict(dict)
    for s in sections:
        first[s.name].setdefault(s.instance_id, s)
    cpus = set(first.get("cpu", {})) or set(first.get("cpu_common", {}))
    for name, by_id in first.items():
        if name == _APIC:
            yield from _apic(by_id, cpus)
            continue
        n = len(by_id)
        for iid, s in sorted(by_id.items()):
            if iid >= n:
                hint = (
                    "with cpu_index, which numbers a machine's CPUs from 0"
                    if name in _CPU
                    else "one more than the highest of the same idstr, so they run 0.."
                    f"{n - 1} (a gap is possible only where a device was unplugged)"
                )
                yield Finding(
                    ERROR,
                    "instance-id",
                    f"section {name!r} has instance {iid}, but {n} instance(s) of it are in "
                    f"the stream ({sorted(by_id)}): QEMU registers them {hint}",
                    offset=s.offset,
                )
    if "cpu" in first and "cpu_common" in first and set(first["cpu"]) != set(first["cpu_common"]):
        s = next(iter(first["cpu_common"].values()))
        yield Finding(
            ERROR,
            "instance-id",
            f"the 'cpu' sections have instances {sorted(first['cpu'])} and the 'cpu_common' "
            f"ones {sorted(first['cpu_common'])}: QEMU registers both with each CPU's cpu_index",
            offset=s.offset,
        )


def _apic(by_id: dict[int, Section], cpus: set[int]) -> Iterator[Finding]:
    if not cpus:
        return
    first = next(iter(by_id.values()))
    if len(by_id) != len(cpus):
        yield Finding(
            ERROR,
            "instance-id",
            f"{len(by_id)} 'apic' section(s) for {len(cpus)} CPU(s): each CPU has one",
            offset=first.offset,
        )
    elif 0 in cpus and 0 not in by_id:
        yield Finding(
            ERROR,
            "instance-id",
            f"the 'apic' sections have instances {sorted(by_id)}: CPU 0's APIC has id 0, its "
            "instance in QEMU (initial_apic_id)",
            offset=first.offset,
        )


def _section_order(full: list[Section]) -> Iterator[Finding]:
    # The priority classes come first (savevm_state_handler_insert), so a lower id may
    # follow only a section of the leading run of higher-priority vmsds.
    leading = True
    for before, s in pairwise(full):
        leading = leading and before.name.rsplit("/", 1)[-1] in _PRIORITY_VMSDS
        low = s.name.rsplit("/", 1)[-1] in _LOW_PRIORITY_VMSDS
        if s.section_id < before.section_id and not leading and not low:
            yield Finding(
                ERROR,
                "section-id-order",
                f"section {s.name!r} has id {s.section_id}, lower than the {before.section_id} "
                f"of {before.name!r} before it: QEMU numbers sections as it registers them and "
                "sends them in that order within one priority",
                offset=s.offset,
            )


def _eos_words(stream: Stream) -> Iterator[Finding]:
    # QEMU ends every RAM section with the EOS word, so it is the payload's last 8 bytes:
    # the word the reader read there and kept in the chunk's entries, else read again from
    # the input (the record columns would cost numpy and a big stream's memory).  Each read
    # maps the pages around the word (fault-around): they are dropped from the RSS every
    # RELEASE_EVERY bytes of stream, one call for many chunks.
    released = 0
    mapping = None
    for s in stream.sections:
        p = s.payload
        if not isinstance(p, RamPayload):
            continue
        at = s.offset + s.size - (FOOTER_SIZE if s.footer else 0) - 8
        if at < 0 or at + 8 > len(p.source):
            continue
        word = p.end_word()
        if word is None:
            (word,) = _BE64.unpack_from(p.source, at)
            if isinstance(p.source.obj, mmap.mmap) and len(p.source.obj) == len(p.source):
                mapping = p.source.obj
                if at - released >= RELEASE_EVERY:
                    released = release_pages(mapping, max(0, released - _READ_AROUND), at)
        if word & (p.page_size - 1) == RAM_EOS and word != RAM_EOS:
            yield Finding(
                ERROR,
                "ram-eos-word",
                f"the RAM section's end-of-section word is 0x{word:016x}; QEMU writes "
                f"RAM_SAVE_FLAG_EOS alone (0x{RAM_EOS:016x})",
                offset=at,
            )
    if mapping is not None:
        release_pages(mapping, max(0, released - _READ_AROUND), at + 8)
