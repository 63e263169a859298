"""miglab.devices.virtio_tail finds a vmstate_virtio subsection's value as a decode does."""

from __future__ import annotations

from pathlib import Path

import pytest

import miglab
from miglab.devices.virtio import SUBSECTIONS, decode_virtio
from miglab.devices.virtio_tail import subsection_value_at
from miglab.vmstate.state import VMState
from tests.helpers import STREAMS

FEATURES = "virtio/64bit_features"


def _virtio_fields(path: Path) -> list[tuple[str, bytes]]:
    return [
        (x.payload.desc.name, bytes(x.payload.fields["virtio"]))
        for x in miglab.load(path).sections
        if isinstance(x.payload, VMState) and "virtio" in x.payload.fields
    ]


WITH_VIRTIO = [p for p in STREAMS if _virtio_fields(p)]


@pytest.mark.parametrize("path", WITH_VIRTIO, ids=[p.stem for p in WITH_VIRTIO])
def test_the_found_value_is_the_decoded_one(path: Path) -> None:
    for device, raw in _virtio_fields(path):
        decoded = decode_virtio(raw, device)
        for sub in SUBSECTIONS:
            at = subsection_value_at(raw, sub.name)
            if sub.name not in decoded.subsections:
                assert at == -1, (device, sub.name)
                continue
            assert at is not None and at > 0, (device, sub.name)
            if sub.name == FEATURES:
                value = decoded.subsections[FEATURES].fields["guest_features"]
                assert int.from_bytes(raw[at : at + 8], "big") == value, device


def _one() -> tuple[str, bytes]:
    for path in WITH_VIRTIO:
        for device, raw in _virtio_fields(path):
            if subsection_value_at(raw, FEATURES) not in (None, -1):
                return device, raw
    raise AssertionError("no virtio field with 64-bit features in the data")


def test_a_header_that_occurs_twice_cannot_be_told() -> None:
    _, raw = _one()
    head = bytes((5, len(FEATURES))) + FEATURES.encode()
    # the header once more inside the PCI config bytes at the start: no longer sure which
    assert subsection_value_at(raw[:8] + head + raw[8 + len(head) :], FEATURES) is None


@pytest.mark.parametrize("change", ["longer", "shorter", "version"])
def test_subsections_that_do_not_end_at_the_end_cannot_be_told(change: str) -> None:
    _, raw = _one()
    at = subsection_value_at(raw, FEATURES)
    assert at is not None and at > 0
    if change == "longer":
        bad = raw + b"\0"
    elif change == "shorter":
        bad = raw[:-1]
    else:  # a version the subsection does not have
        bad = raw[: at - 4] + (7).to_bytes(4, "big") + raw[at:]
    assert subsection_value_at(bad, FEATURES) is None


def test_a_missing_header_means_no_subsection() -> None:
    _, raw = _one()
    at = subsection_value_at(raw, FEATURES)
    assert at is not None
    # cut the subsection out (its header, version and eight bytes): nothing to find
    head = at - 4 - 2 - len(FEATURES)
    assert subsection_value_at(raw[:head] + raw[at + 8 :], FEATURES) == -1
