"""Virtio feature bits a machine generation offers and an older one does not.

A guest driver acks every feature its device offers; the stream carries the acked set
(``guest_features`` of the ``virtio/64bit_features`` subsection of the ``virtio`` field), and
the destination refuses features its own device does not offer.  QEMU 7.2's virtio devices
offer ``VIRTIO_F_RING_RESET`` (bit 40) on machines >= 7.2 (``hw_compat_7_1`` turns it off
below), QEMU 5.2 has no such feature: a stream from any pc-*-7.2 or newer machine is refused
by QEMU 5.2 ("Features 0x10130006e74 unsupported").  Converting to the generation without the
bit clears it; that is guest-visible (the driver still believes it has the feature), with the
consequence the knowledge names (``compat-virtio.json`` ``features``).

The proxy converts while the guest is stopped, and a virtio device's bytes take ~2 ms to
decode and ~4 ms to encode, so neither is done where the subsection can be found by its header
(:func:`~miglab.devices.virtio_tail.subsection_value_at`): the acked set is the eight bytes
after it, rewritten in place (the encoder would write the same bytes with the same value).
Where it cannot be found so, the device is decoded to read the acked set, and then rewritten
in place where the header occurs once, re-encoded otherwise.
"""

from __future__ import annotations

from typing import Any

from miglab.compat.edit import Edit
from miglab.compat.registry import ANY_DEVICE, MACHINE_PREFIX, Registry, Transform
from miglab.devices.virtio import VIRTIO_INFO, decode_virtio, encode_virtio
from miglab.devices.virtio_tail import subsection_value_at
from miglab.knowledge import compat_virtio
from miglab.knowledge.compat import VirtioFeatureRule
from miglab.vmstate.state import VMState
from miglab.wire import SectionType

__all__ = ("register_feature_transforms",)

_FEATURES_64 = "virtio/64bit_features"
#: The subsection's header on the wire: type byte, name length, name (its version follows).
_FEATURES_64_HEAD = bytes((SectionType.SUBSECTION, len(_FEATURES_64))) + _FEATURES_64.encode()


def register_feature_transforms(registry: Registry) -> None:
    """A step from each rule's ``offered_from`` generation to its ``absent_in`` one, for
    every device (the planner walks the generations in between)."""
    for rule in compat_virtio().features.rules:
        registry.add(
            Transform(
                ANY_DEVICE,
                MACHINE_PREFIX + rule.offered_from,
                MACHINE_PREFIX + rule.absent_in,
                _clear_fn(rule),
                f"virtio feature {rule.name} not offered on {rule.absent_in} machines",
            )
        )


def _clear_fn(rule: VirtioFeatureRule) -> Any:
    def run(edit: Edit) -> None:
        for state in list(edit.states):
            field = next((f.name for f in state.desc.fields if f.info == VIRTIO_INFO), None)
            if field is None or not isinstance(state.fields[field], bytes | bytearray):
                continue
            data = bytes(state.fields[field])
            new = _without(data, state.desc.name, rule.bit)
            if new is None:
                continue
            edit.set(
                state.desc.name,
                field,
                new,
                classification="guest-visible",
                reason=f"guest_features: {rule.name} (bit {rule.bit}) cleared; the guest "
                f"acked it, QEMU {rule.absent_in} machines do not offer it "
                f"({rule.source}); {rule.what}",
            )

    return run


def _without(data: bytes, device: str, bit: int) -> bytes | None:
    """``data`` with feature ``bit`` cleared from the acked set; None when the subsection is
    not there or the bit not acked.  Decoded only where the header does not tell."""
    at = subsection_value_at(data, _FEATURES_64)
    if at is not None:
        acked = int.from_bytes(data[at : at + 8], "big")
        if at < 0 or not (acked >> bit) & 1:
            return None
        return data[:at] + (acked & ~(1 << bit)).to_bytes(8, "big") + data[at + 8 :]
    inner = decode_virtio(data, device)
    sub = inner.subsections.get(_FEATURES_64)
    if sub is None or not (sub.fields["guest_features"] >> bit) & 1:
        return None
    acked = sub.fields["guest_features"]
    sub.fields["guest_features"] = acked & ~(1 << bit)
    return _with_features(data, inner, acked, sub.fields["guest_features"])


def _with_features(data: bytes, inner: VMState, old: int, new: int) -> bytes:
    """``data`` (decoded: ``inner``, already changed) with ``guest_features`` ``new``."""
    at = data.find(_FEATURES_64_HEAD)
    if at >= 0 and data.find(_FEATURES_64_HEAD, at + 1) < 0:
        q = at + len(_FEATURES_64_HEAD) + 4  # after the subsection's version_id
        if data[q : q + 8] == old.to_bytes(8, "big"):
            return data[:q] + new.to_bytes(8, "big") + data[q + 8 :]
    return encode_virtio(inner)
