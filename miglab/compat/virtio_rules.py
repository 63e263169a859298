"""virtio devices between QEMU builds: changes inside the ``virtio`` save data.

A virtio device's section is one opaque field, ``virtio`` (see :mod:`miglab.devices.virtio`),
so the field-level rules of :mod:`miglab.compat.qemu` cannot reach what differs between QEMU
builds.  The transforms here decode the field, change it, and encode it again.  The
knowledge lives in ``miglab/knowledge/compat-virtio.json``: per device, the PCI config
layout and MSI-X vector count each machine generation gives it.  The layout follows the
machine type, not the QEMU build (a compat property of older machines): QEMU 10.0 running
pc-q35-7.2 gives the device 7.2's layout, so these steps are keyed on machine generations
(``machine:7.2`` -> ``machine:10.0``) and a conversion that keeps its machine type runs none.

Today one device differs: virtio-balloon-pci has two MSI-X vectors on 10.0's newest
machines and none on machines up to 7.2.  Converting removes (or adds) the MSI-X
state virtio-pci saves — table, pending bits, config vector, one vector per queue — and
rewrites the config bytes where the two layouts differ (capability pointer, the MSI-X
capability), taking the destination's layout.  The guest may have walked the capability
list, so these changes are guest-visible; a guest whose driver enabled MSI-X cannot lose it
and is refused.

A change report's unit is a member of the section, and here that is the ``virtio`` field:
each transform reports one change of it, whose reason lists every change made inside it
(recorded on the decoded state with an :class:`~miglab.compat.edit.Edit` of its own) with
its classification; the field's classification is the worst of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from miglab.compat.edit import Edit
from miglab.compat.registry import MACHINE_PREFIX, Registry, Transform
from miglab.devices.virtio import (
    MSIX_ENTRY_SIZE,
    PCI_CAP_ID_MSIX,
    VIRTIO_INFO,
    VIRTIO_NO_VECTOR,
    capabilities,
    decode_virtio,
    encode_virtio,
    is_express,
    msix_vectors_in,
    msix_vectors_of,
    queue_description,
    virtio_description,
)
from miglab.errors import CompatError
from miglab.knowledge import compat_virtio
from miglab.knowledge.compat import VirtioDevice
from miglab.vmstate.state import VMState

__all__ = ("register_virtio_transforms", "vector_option", "vectors_option")

_MSIX_ENABLE = 0x8000  # PCI_MSIX_FLAGS_ENABLE in the capability's message control
_MSIX_MASKBIT = 1  # PCI_MSIX_ENTRY_CTRL_MASKBIT: how QEMU resets every table entry
_PCI_BASE_ADDRESS_0 = 0x10


def register_virtio_transforms(registry: Registry) -> None:
    """Register a step each way between neighbouring machine generations where a device's
    vector count changes (the planner walks the generations in between)."""
    for device, know in compat_virtio().devices.items():
        vectors = know.vectors
        for a, b in itertools.pairwise(vectors):
            if vectors[a] == vectors[b]:
                continue
            for src, dst in ((a, b), (b, a)):
                registry.add(
                    Transform(
                        device,
                        MACHINE_PREFIX + src,
                        MACHINE_PREFIX + dst,
                        _step(device, dst),
                        f"MSI-X vectors and PCI capability layout of {know.pci_device}",
                    )
                )


def vector_option(state: VMState, dst_generation: str, to_qemu: str) -> tuple[str, str] | None:
    """The destination option that keeps a virtio device's MSI-X vectors, or None.

    When the device has another vector count on the destination's machine generation than
    in ``state`` and the destination build's device takes a ``vectors`` property, the guest
    keeps its view if the destination is started with ``-global DEV.vectors=N``: no state
    changes.  None when the counts agree, the device is not a known virtio device, or the
    destination cannot be told (then the device state must be converted, see the steps).
    """
    know = compat_virtio().devices.get(state.desc.name)
    name = next((f.name for f in state.desc.fields if f.info == VIRTIO_INFO), None)
    if know is None or name is None:
        return None
    # Read from the PCI config at the front of the bytes: the device is not decoded here
    # (the proxy converts while the guest is stopped, and a decode costs ~10 ms).
    have = msix_vectors_in(bytes(state.fields[name]))
    return vectors_option(state.desc.name, have, dst_generation, to_qemu)


def vectors_option(
    device: str, have: int, dst_generation: str, to_qemu: str
) -> tuple[str, str] | None:
    """:func:`vector_option` for a device of vmsd name ``device`` with ``have`` MSI-X vectors
    (what ``miglab migrate`` reads from the running source before the stream exists)."""
    know = compat_virtio().devices.get(device)
    if know is None:
        return None
    want = know.vectors.get(dst_generation.removeprefix(MACHINE_PREFIX))
    if want is None or have == want or to_qemu not in know.vectors_property:
        return None
    return ("-global", f"{know.pci_device}.vectors={have}")


def _step(device: str, dst: str) -> Callable[[Edit], None]:
    def run(edit: Edit) -> None:
        _convert(edit, device, dst)

    return run


# --- the step ----------------------------------------------------------------------------
def _convert(edit: Edit, device: str, dst: str) -> None:
    """Give ``device`` the MSI-X vectors and PCI layout machine generation ``dst`` gives it."""
    if not any(s.desc.name == device for s in edit.states):
        return
    state = edit.state(device)
    name = next((f.name for f in state.desc.fields if f.info == VIRTIO_INFO), None)
    if name is None or not isinstance(state.fields[name], bytes | bytearray | memoryview):
        return
    know = compat_virtio().devices[device]
    inner = decode_virtio(bytes(state.fields[name]), device)
    have, want = msix_vectors_of(inner.desc), know.vectors[dst]
    if have == want:
        return
    if have and not want:
        _check_msix_unused(inner, device, dst, know)
    layouts = {lay.msix_vectors: bytes.fromhex(lay.config) for lay in know.layouts.values()}
    if have not in layouts or want not in layouts:
        raise CompatError(
            f"{know.pci_device} has {want} MSI-X vectors on {dst} machine types, {have} "
            "here, and miglab knows no PCI layout to convert between the two (a destination "
            f"build whose device takes 'vectors' keeps {have} instead: vector_option)",
            path=f"{device}/{name}",
        )
    sub = Edit([inner])
    _layout(sub, inner, layouts[have], layouts[want], know, dst)
    if want:
        _add_msix(sub, inner, want, dst)
    else:
        _remove_msix(sub, inner, dst)
    inner.desc = virtio_description(
        express=is_express(inner.desc),
        msix_vectors=want,
        device=next((f for f in inner.desc.fields if f.name == "device"), None),
    )
    edit.set(
        device,
        name,
        encode_virtio(inner),
        classification="guest-visible" if sub.report.guest_visible else "safe",
        reason="virtio save data re-encoded; inside it: "
        + "; ".join(f"{c.action} {c.path} [{c.classification}] ({c.reason})" for c in sub.report),
    )


def _layout(
    sub: Edit, inner: VMState, src: bytes, dst: bytes, know: VirtioDevice, qemu: str
) -> None:
    """Take the destination's bytes wherever the two builds' layouts differ."""
    config = inner.fields["pci_dev"].fields["config"]
    new = bytearray(config)
    moved = [i for i in range(len(src)) if src[i] != dst[i]]
    for i in moved:
        new[i] = dst[i]
    had = capabilities(bytes(config)).get(PCI_CAP_ID_MSIX)
    if had is not None and PCI_CAP_ID_MSIX not in capabilities(dst):
        bar = _PCI_BASE_ADDRESS_0 + 4 * know.msix_bar
        new[bar : bar + 4] = bytes(4)  # the BAR that held only the MSI-X table and PBA
    where = ", ".join(f"0x{i:02x}" for i in moved)
    sub.set(
        "virtio",
        "pci_dev/config",
        bytes(new),
        classification="guest-visible",
        reason=f"PCI capability layout of {know.pci_device} on {qemu} machine types (bytes {where}: "
        f"capability pointer and MSI-X capability); the guest may have read the list",
    )


def _check_msix_unused(inner: VMState, device: str, qemu: str, know: VirtioDevice) -> None:
    """Refuse to take MSI-X away from a guest whose driver enabled it."""
    config = bytes(inner.fields["pci_dev"].fields["config"])
    at = capabilities(config)[PCI_CAP_ID_MSIX]
    if int.from_bytes(config[at + 2 : at + 4], "little") & _MSIX_ENABLE:
        takes = ", ".join(know.vectors_property)
        raise CompatError(
            f"the guest enabled MSI-X, which {know.pci_device} does not have on {qemu} "
            f"machine types, and no destination property can give it back (only QEMU {takes} "
            "take its 'vectors'); its driver would wait for interrupts that never come",
            path=f"{device}/virtio/pci_dev/config",
        )


def _remove_msix(sub: Edit, inner: VMState, qemu: str) -> None:
    why = f"the device has no MSI-X on {qemu} machine types"
    for f in ("msix_table", "msix_pba", "config_vector"):
        sub.remove("virtio", f, classification="guest-visible", reason=why)
    queue = queue_description(msix=False)
    unused = all(q.fields["vector"] == VIRTIO_NO_VECTOR for q in inner.fields["vq"])
    sub.set(
        "virtio",
        "vq",
        [
            VMState(queue, q.version_id, {k: v for k, v in q.fields.items() if k != "vector"})
            for q in inner.fields["vq"]
        ],
        classification="safe" if unused else "guest-visible",
        reason=f"per-queue MSI-X vectors dropped: {why}"
        + ("" if unused else " (the guest had assigned vectors)"),
    )


def _add_msix(sub: Edit, inner: VMState, vectors: int, qemu: str) -> None:
    why = (
        f"the device has {vectors} MSI-X vectors on {qemu} machine types; "
        "reset state (all masked, none used)"
    )
    entry = bytes(MSIX_ENTRY_SIZE - 4) + _MSIX_MASKBIT.to_bytes(4, "little")
    sub.add(
        "virtio",
        "msix_table",
        "buffer",
        entry * vectors,
        after="pci_dev",
        size=MSIX_ENTRY_SIZE * vectors,
        classification="guest-visible",
        reason=why,
    )
    size = (vectors + 7) // 8
    sub.add(
        "virtio",
        "msix_pba",
        "buffer",
        bytes(size),
        after="msix_table",
        size=size,
        classification="guest-visible",
        reason=why,
    )
    sub.add(
        "virtio",
        "config_vector",
        "uint16",
        VIRTIO_NO_VECTOR,
        after="msix_pba",
        classification="guest-visible",
        reason=why,
    )
    queue = queue_description(msix=True)
    sub.set(
        "virtio",
        "vq",
        [
            VMState(queue, q.version_id, {**q.fields, "vector": VIRTIO_NO_VECTOR})
            for q in inner.fields["vq"]
        ],
        classification="safe",
        reason=f"per-queue MSI-X vectors: none assigned ({why})",
    )
