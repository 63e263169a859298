"""QEMU's virtio save format (``VMSTATE_VIRTIO_DEVICE``) as VMState descriptions.

Every virtio device section carries one field, ``virtio``, of VMStateInfo type ``virtio``:
QEMU writes it with ``virtio_save`` (hw/virtio/virtio.c) and the vmdesc does not describe it,
so the stream reader keeps it as opaque bytes.  This module describes it for the virtio-pci
transport, in wire order:

1. the transport's ``save_config`` (``virtio_pci_save_config``): the PCI header
   (``vmstate_pci_device``; 4096 config bytes for PCI Express), then, when the device has
   MSI-X, its table (16 bytes a vector), pending-bit array (one bit a vector, whole bytes)
   and the config-change vector;
2. ``status``, ``isr``, ``queue_sel``, the low 32 bits of the guest features, ``config_len``
   and the device config space;
3. the queue count and per queue: ring size, descriptor table address, ``last_avail_idx``
   and (transport ``save_queue``) the queue's MSI-X vector when the device has MSI-X;
4. the device class's own state (``vdc->save`` / ``vdc->vmsd``): described for the devices
   in :data:`DEVICE_PARTS`, an opaque span for others;
5. the subsections of ``vmstate_virtio`` (``virtio/device_endian``, ``virtio/64bit_features``,
   ``virtio/virtqueues``, ``virtio/ringsize``, ``virtio/broken``, ``virtio/extra_state`` with
   virtio-pci's ``virtio_pci/modern_state``, ``virtio/started``,
   ``virtio/packed_virtqueues``, ``virtio/disabled``).

What shapes the format but is not on the wire is read from what is:
the MSI-X vector count and PCI Express-ness from the config space's capability list, the
device part's span from where ``vmstate_virtio``'s subsections start.  :func:`expand_virtio`
replaces a section's opaque ``virtio`` bytes by the decoded state (a struct field) and
:func:`collapse_virtio` puts the bytes back; both are byte-exact.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from miglab.devices.pci import (
    PCI_CAP_ID_EXP,
    PCI_CAP_ID_MSIX,
    PCI_CONFIG_SIZE,
    PCIE_CONFIG_SIZE,
    VMSTATE_PCI_DEVICE,
    capability_list,
)
from miglab.errors import MiglabError, MigrationFormatError
from miglab.visitors.qemufile import QEMUFileReader, QEMUFileWriter
from miglab.visitors.qemufile_visitor import QEMUFileInputVisitor, QEMUFileOutputVisitor
from miglab.vmstate.description import VMStateDescription, VMStateField, describe, field
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate
from miglab.wire import SectionType

__all__ = (
    "BALLOON_PAGE_POISON",
    "BALLOON_PAGE_POISON_5_2",
    "DEVICE_PARTS",
    "MSIX_ENTRY_SIZE",
    "PCI_CAP_ID_EXP",
    "PCI_CAP_ID_MSIX",
    "SUBSECTIONS",
    "VIRTIO_INFO",
    "VIRTIO_NO_VECTOR",
    "VIRTIO_QUEUE_MAX",
    "capabilities",
    "collapse_virtio",
    "decode_virtio",
    "encode_virtio",
    "expand_virtio",
    "is_express",
    "msix_vectors_in",
    "msix_vectors_of",
    "queue_description",
    "virtio_description",
)

VIRTIO_INFO = "virtio"  # the VMStateInfo name of VMSTATE_VIRTIO_DEVICE
VIRTIO_QUEUE_MAX = 1024  # length of the per-queue arrays in the subsections
VIRTIO_NO_VECTOR = 0xFFFF
MSIX_ENTRY_SIZE = 16  # PCI_MSIX_ENTRY_SIZE
_PCI_HEADER = 4 + PCI_CONFIG_SIZE  # version_id + config: where the capability list can be read


# --- the common part -------------------------------------------------------------------
_PCIE_DEVICE = dataclasses.replace(
    VMSTATE_PCI_DEVICE,
    name="PCIEDevice",
    fields=tuple(
        dataclasses.replace(f, size=PCIE_CONFIG_SIZE) if f.name == "config" else f
        for f in VMSTATE_PCI_DEVICE.fields
    ),
)


def queue_description(msix: bool) -> VMStateDescription:
    """One entry of virtio_save's queue loop (PCI: no per-queue alignment); ``msix``: the
    transport adds the queue's MSI-X vector."""
    fields = [
        field("vring.num", "uint32"),
        field("vring.desc", "uint64"),
        field("last_avail_idx", "uint16"),
    ]
    if msix:
        fields.append(field("vector", "uint16"))  # virtio_pci_save_queue
    return describe("VirtQueue", fields)


def _array_of(name: str, fields: list[VMStateField]) -> VMStateField:
    """``VMSTATE_STRUCT_VARRAY_POINTER_KNOWN(vq, ..., VIRTIO_QUEUE_MAX, ...)``."""
    return field("vq", "struct", num=VIRTIO_QUEUE_MAX, struct=describe(name, fields))


def _sub(
    name: str, fields: list[VMStateField], subs: tuple[VMStateDescription, ...] = ()
) -> VMStateDescription:
    return describe(name, fields, minimum_version_id=1, subsections=subs)


_MODERN_QUEUE = describe(
    "virtio_pci/modern_queue_state",
    [
        field("num", "uint16"),
        field("unused", "unused_buffer", size=1),  # enabled was once a be16
        field("enabled", "bool"),
        field("desc", "uint32", num=2),
        field("avail", "uint32", num=2),
        field("used", "uint32", num=2),
    ],
    minimum_version_id=1,
)
_VIRTIO_PCI = _sub(
    "virtio_pci",
    [],
    (
        _sub(
            "virtio_pci/modern_state",
            [
                field("dfselect", "uint32"),
                field("gfselect", "uint32"),
                field("guest_features", "uint32", num=2),
                field("vqs", "struct", num=VIRTIO_QUEUE_MAX, struct=_MODERN_QUEUE),
            ],
        ),
    ),
)

#: ``vmstate_virtio``'s subsections, in the order QEMU sends them.
SUBSECTIONS: tuple[VMStateDescription, ...] = (
    _sub("virtio/device_endian", [field("device_endian", "uint8")]),
    _sub("virtio/64bit_features", [field("guest_features", "uint64")]),
    _sub(
        "virtio/virtqueues",
        [
            _array_of(
                "virtqueue_state", [field("vring.avail", "uint64"), field("vring.used", "uint64")]
            )
        ],
    ),
    _sub("virtio/ringsize", [_array_of("ringsize_state", [field("vring.num_default", "uint32")])]),
    _sub("virtio/broken", [field("broken", "bool")]),
    _sub("virtio/extra_state", [field("extra_state", "struct", struct=_VIRTIO_PCI)]),
    _sub("virtio/started", [field("started", "bool")]),
    _sub(
        "virtio/packed_virtqueues",
        [
            _array_of(
                "packed_virtqueue_state",
                [
                    field("last_avail_idx", "uint16"),
                    field("last_avail_wrap_counter", "bool"),
                    field("used_idx", "uint16"),
                    field("used_wrap_counter", "bool"),
                    field("inuse", "uint32"),
                ],
            )
        ],
    ),
    _sub("virtio/disabled", [field("disabled", "bool")]),
)

_TAIL = describe("virtio", [], subsections=SUBSECTIONS)


# --- device parts ----------------------------------------------------------------------
#: ``vmstate_virtio_balloon_page_poison``'s name from QEMU 6.2 on.
BALLOON_PAGE_POISON = "virtio-balloon-device/page-poison"
#: Its name up to QEMU 6.1 (sic): what QEMU 5.2 sends.
BALLOON_PAGE_POISON_5_2 = "vitio-balloon-device/page-poison"


def _balloon(data: bytes, at: int) -> VMStateDescription:
    """``vmstate_virtio_balloon_device`` (hw/virtio/virtio-balloon.c)."""
    return describe(
        "virtio-balloon-device",
        [field("num_pages", "uint32"), field("actual", "uint32")],
        minimum_version_id=1,
        subsections=(
            _sub(
                "virtio-balloon-device/free-page-report",
                [
                    field("free_page_hint_cmd_id", "uint32"),
                    field("free_page_hint_status", "uint32"),
                ],
            ),
            # the same subsection under the name each build sends: QEMU 5.1 to 6.1 misspelt
            # it (commit 7483cbbaf8), 6.2 fixed the name (commit 243a9284a9, "virtio-balloon:
            # Fix page-poison subsection name"); a stream carries at most one of the two
            _sub(BALLOON_PAGE_POISON_5_2, [field("poison_val", "uint32")]),
            _sub(BALLOON_PAGE_POISON, [field("poison_val", "uint32")]),
        ),
    )


def _serial(data: bytes, at: int) -> VMStateDescription | None:
    """``virtio_serial_save_device`` (hw/char/virtio-serial-bus.c): config, port map, ports.

    A port with a popped virtqueue element carries that element, which is not described:
    then there is no description (None) and the device part stays opaque.
    """
    r = QEMUFileReader(data, at)
    r.be16("cols")
    r.be16("rows")
    max_nr_ports = r.be32("max_nr_ports")
    words = (max_nr_ports + 31) // 32
    r.read_bytes(4 * words, "ports_map")
    nr_active = r.be32("nr_active_ports")
    for _ in range(nr_active):
        r.read_bytes(6, "port id and connection flags")
        if r.be32("elem_popped"):
            return None
    port = describe(
        "VirtIOSerialPort",
        [
            field("id", "uint32"),
            field("guest_connected", "uint8"),
            field("host_connected", "uint8"),
            field("elem_popped", "uint32"),
        ],
    )
    return describe(
        "virtio-serial-device",
        [
            field("config.cols", "uint16"),
            field("config.rows", "uint16"),
            field("config.max_nr_ports", "uint32"),
            field("ports_map", "uint32", num=words),
            field("nr_active_ports", "uint32"),
            field("ports", "struct", num_field="nr_active_ports", struct=port),
        ],
    )


#: Section vmsd name -> the device class's own part (None: the device has none).  The
#: function gets the ``virtio`` bytes and where the part starts (some parts size themselves
#: from values written before them) and returns the part's description, or None when these
#: bytes hold something it does not describe (the part then stays opaque).  Devices not
#: listed keep an opaque part too.
DEVICE_PARTS: dict[str, Callable[[bytes, int], VMStateDescription | None] | None] = {
    "virtio-balloon": _balloon,
    "virtio-console": _serial,
    "virtio-rng": None,
    "virtio-scsi": None,
    "virtio-input": None,
}


# --- layout and description ------------------------------------------------------------
def capabilities(config: bytes) -> dict[int, int]:
    """Capability id -> offset of its first entry in the standard list
    (:func:`miglab.devices.pci.capability_list`)."""
    out: dict[int, int] = {}
    for cap_id, at in capability_list(config):
        out.setdefault(cap_id, at)
    return out


def _msix_vectors(config: bytes) -> int:
    at = capabilities(config).get(PCI_CAP_ID_MSIX)
    if at is None:
        return 0
    return (int.from_bytes(config[at + 2 : at + 4], "little") & 0x7FF) + 1


def virtio_description(
    *, express: bool = False, msix_vectors: int = 0, device: VMStateField | None = None
) -> VMStateDescription:
    """The description of a device's ``virtio`` bytes.

    Args:
        express: PCI Express device (4096 config bytes instead of 256).
        msix_vectors: MSI-X table size; 0 = no MSI-X (no table, PBA or vectors on the wire).
        device: the ``device`` field carrying the device class's own part (a struct, or an
            opaque buffer for devices miglab does not describe); None when there is none.
    """
    n = msix_vectors
    pci = _PCIE_DEVICE if express else VMSTATE_PCI_DEVICE
    fields = [field("pci_dev", "struct", struct=pci)]
    if n:
        fields += [
            field("msix_table", "buffer", size=n * MSIX_ENTRY_SIZE),
            field("msix_pba", "buffer", size=(n + 7) // 8),
            field("config_vector", "uint16"),
        ]
    fields += [
        field("status", "uint8"),
        field("isr", "uint8"),
        field("queue_sel", "uint16"),
        field("guest_features", "uint32"),
        field("config_len", "uint32"),
        field("config", "buffer", size_field="config_len"),
        field("num_queues", "uint32"),
        field("vq", "struct", num_field="num_queues", struct=queue_description(bool(n))),
    ]
    if device is not None:
        fields.append(device)
    return describe("virtio", fields, subsections=SUBSECTIONS)


@functools.cache
def _head(express: bool, msix_vectors: int) -> VMStateDescription:
    """The part before the device's own part (no subsections, a name they cannot match);
    one object per shape, so its layout is compiled once, not per device decoded."""
    desc = virtio_description(express=express, msix_vectors=msix_vectors)
    return dataclasses.replace(desc, name="virtio-head", subsections=())


def msix_vectors_of(desc: VMStateDescription) -> int:
    """The MSI-X table size a ``virtio`` description has (0: no MSI-X)."""
    for f in desc.fields:
        if f.name == "msix_table":
            return f.size // MSIX_ENTRY_SIZE
    return 0


def is_express(desc: VMStateDescription) -> bool:
    """Whether a ``virtio`` description carries a PCI Express config space."""
    pci = desc.field_named("pci_dev").struct
    return pci is not None and pci.field_named("config").size == PCIE_CONFIG_SIZE


# --- decode and encode -----------------------------------------------------------------
def _read(data: bytes, desc: VMStateDescription, start: int = 0) -> tuple[VMState, int]:
    r = QEMUFileReader(data, start)
    state = visit_vmstate(QEMUFileInputVisitor(r), desc, None, desc.version_id)
    return state, r.pos


def _opaque_span(data: bytes, at: int) -> tuple[int, VMState]:
    """Bytes of an undescribed device part: up to where ``vmstate_virtio``'s subsections
    start, i.e. the first position from which they read to the end exactly; and the
    subsections read from there."""
    for p in range(at, len(data) + 1):
        if p < len(data) and not (
            data[p] == SectionType.SUBSECTION and data[p + 2 : p + 9] == b"virtio/"
        ):
            continue
        try:
            tail, end = _read(data, _TAIL, p)
        except MiglabError:
            continue
        if end == len(data):
            return p - at, tail
    raise MigrationFormatError(
        "no vmstate_virtio subsections end the virtio data", offset=at, path="virtio/device"
    )


def _transport(data: bytes) -> tuple[bool, int]:
    """Whether the device is PCI Express, and its MSI-X table size, from its PCI config."""
    if len(data) < _PCI_HEADER:
        raise MigrationFormatError(
            f"virtio data of {len(data)} bytes is shorter than a PCI header", offset=len(data)
        )
    config = data[4:_PCI_HEADER]
    express = PCI_CAP_ID_EXP in capabilities(config)
    full = data[4 : 4 + PCIE_CONFIG_SIZE] if express else config
    return express, _msix_vectors(full)


def msix_vectors_in(data: bytes) -> int:
    """The MSI-X table size of a device's ``virtio`` bytes (0: no MSI-X), read from the PCI
    config at their start without decoding the rest: what
    ``msix_vectors_of(decode_virtio(data, ...).desc)`` returns for bytes that decode.

    Raises:
        MigrationFormatError: the bytes are shorter than a PCI header.
    """
    return _transport(data)[1]


def decode_virtio(data: bytes, device: str) -> VMState:
    """Decode one device's ``virtio`` bytes (virtio-pci transport).

    Args:
        data: the field's bytes.
        device: the section's vmsd name (``virtio-balloon``): picks the device part.

    Raises:
        MigrationFormatError: the bytes do not follow the format, or leave bytes over.
    """
    express, vectors = _transport(data)
    head, at = _read(data, _head(express, vectors))
    make = DEVICE_PARTS.get(device, _undescribed)
    sub = make(data, at) if make is not None else None
    tail: VMState | None = None
    if sub is not None:
        part: VMStateField | None = field("device", "struct", struct=sub)
    elif make is None:
        part = None
    else:
        size, tail = _opaque_span(data, at)
        part = field("device", "buffer", size=size) if size else None
    fields = dict(head.fields)
    end = at
    if part is not None:  # read as the one field of a wrapper: the value the full read has
        got, end = _read(data, describe("virtio-device", [part]), at)
        fields["device"] = got.fields["device"]
    if tail is None:  # the subsections' 1024-entry arrays: read once, here or in the span
        tail, end = _read(data, _TAIL, end)
    else:
        end = len(data)
    if end != len(data):
        raise MigrationFormatError(
            f"{len(data) - end} bytes left over after the virtio data", offset=end, path=device
        )
    desc = virtio_description(express=express, msix_vectors=vectors, device=part)
    return VMState(desc, desc.version_id, fields, tail.subsections)


def _undescribed(data: bytes, at: int) -> None:
    """The device part of a device miglab has no description for: kept opaque."""
    return None


def encode_virtio(state: VMState) -> bytes:
    """The bytes of a decoded ``virtio`` state."""
    w = QEMUFileWriter()
    visit_vmstate(QEMUFileOutputVisitor(w), state.desc, state, state.version_id)
    return w.getvalue()


# --- in a section's state ----------------------------------------------------------------
def _virtio_field(state: VMState) -> VMStateField | None:
    for f in state.desc.fields:
        if f.info == VIRTIO_INFO:
            return f
    return None


def expand_virtio(state: VMState) -> VMState | None:
    """Replace ``state``'s opaque ``virtio`` bytes by their decoded state, in place.

    The field becomes a struct field (still of type ``virtio``) whose value is the decoded
    :class:`VMState`; the walker writes it back to the same bytes.

    Returns:
        The decoded state, or None when ``state`` has no opaque ``virtio`` field.
    """
    f = _virtio_field(state)
    if f is None or f.kind != "bytes":
        return None
    sub = decode_virtio(bytes(state.fields[f.name]), state.desc.name)
    _replace(state, dataclasses.replace(f, kind="struct", size=0, struct=sub.desc), sub)
    return sub


def collapse_virtio(state: VMState) -> bytes | None:
    """Put a decoded ``virtio`` field back as opaque bytes, in place (inverse of
    :func:`expand_virtio`); returns the bytes, or None when there was nothing to collapse."""
    f = _virtio_field(state)
    if f is None or f.kind != "struct":
        return None
    raw = encode_virtio(state.fields[f.name])
    _replace(state, dataclasses.replace(f, kind="bytes", size=len(raw), struct=None), raw)
    return raw


def _replace(state: VMState, new: VMStateField, value: object) -> None:
    state.desc = dataclasses.replace(
        state.desc, fields=tuple(new if f.name == new.name else f for f in state.desc.fields)
    )
    state.fields[new.name] = value
