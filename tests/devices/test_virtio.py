"""miglab.devices.virtio decodes QEMU's virtio save data; compat converts virtio-balloon."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import miglab
from miglab.compat import convert_stream
from miglab.devices.virtio import (
    collapse_virtio,
    decode_virtio,
    encode_virtio,
    expand_virtio,
    msix_vectors_in,
    msix_vectors_of,
)
from miglab.errors import CompatError, MiglabError
from miglab.vmstate.state import VMState
from tests.helpers import DATA, STREAMS

KNOWLEDGE = json.loads((DATA.parent / "miglab/knowledge/compat-virtio.json").read_text())


def _virtio_sections(path: Path) -> list[tuple[str, str, bytes]]:
    s = miglab.load(path)
    return [
        (x.name, x.payload.desc.name, bytes(x.payload.fields["virtio"]))
        for x in s.sections
        if isinstance(x.payload, VMState) and "virtio" in x.payload.fields
    ]


WITH_VIRTIO = [p for p in STREAMS if _virtio_sections(p)]


def _balloon(path: Path) -> bytes:
    return next(raw for name, _, raw in _virtio_sections(path) if name.endswith("virtio-balloon"))


def test_the_data_has_virtio_devices_of_both_builds() -> None:
    builds = {p.name[:4] for p in WITH_VIRTIO}
    assert builds == {"q100", "q72-"}
    kinds = {dev for p in WITH_VIRTIO for _, dev, _ in _virtio_sections(p)}
    assert {"virtio-balloon", "virtio-console", "virtio-rng", "virtio-scsi"} <= kinds


@pytest.mark.parametrize("path", WITH_VIRTIO, ids=[p.stem for p in WITH_VIRTIO])
def test_every_virtio_section_round_trips_byte_exact(path: Path) -> None:
    for name, device, raw in _virtio_sections(path):
        state = decode_virtio(raw, device)
        assert encode_virtio(state) == raw, name
        assert msix_vectors_in(raw) == msix_vectors_of(state.desc), name  # read without a decode
        # QEMU's virtio_save: the vmstate_virtio subsections of a virtio 1.0 PCI device
        assert "virtio/virtqueues" in state.subsections, name
        modern = state.subsections["virtio/extra_state"].fields["extra_state"]
        assert len(modern.subsections["virtio_pci/modern_state"].fields["vqs"]) == 1024


@pytest.mark.parametrize("path", WITH_VIRTIO, ids=[p.stem for p in WITH_VIRTIO])
def test_expanded_sections_write_the_same_stream(path: Path) -> None:
    raw = path.read_bytes()
    s = miglab.load(raw)
    decoded = [expand_virtio(x.payload) for x in s.sections if isinstance(x.payload, VMState)]
    assert any(d is not None for d in decoded)
    assert s.to_bytes() == raw
    for x in s.sections:
        if isinstance(x.payload, VMState) and "virtio" in x.payload.fields:
            assert isinstance(x.payload.fields["virtio"], VMState)
            assert collapse_virtio(x.payload) == bytes(x.payload.fields["virtio"])
    assert s.to_bytes() == raw


def test_balloon_msix_accounts_for_the_length_difference() -> None:
    new, old = (
        _balloon(DATA / "q100-pc-q35-10.0-virtio.mig"),
        _balloon(DATA / "q72-pc-q35-7.2-virtio.mig"),
    )
    a, b = decode_virtio(new, "virtio-balloon"), decode_virtio(old, "virtio-balloon")
    n, queues = msix_vectors_of(a.desc), a.fields["num_queues"]
    assert (n, msix_vectors_of(b.desc), queues) == (2, 0, 3)
    # msix_save: 16-byte entries and a bit per vector; config vector; one be16 per queue
    assert len(new) - len(old) == 16 * n + (n + 7) // 8 + 2 + 2 * queues
    assert a.fields["pci_dev"].fields["config"][0x34] == 0x98
    assert b.fields["pci_dev"].fields["config"][0x34] == 0x84
    assert a.fields["device"].fields == {"num_pages": 0, "actual": 0}


def test_serial_device_part_is_described() -> None:
    raw = next(
        r
        for _, d, r in _virtio_sections(DATA / "q72-pc-q35-7.2-virtio.mig")
        if d == "virtio-console"
    )
    part = decode_virtio(raw, "virtio-console").fields["device"]
    assert isinstance(part, VMState)
    assert part.fields["config.max_nr_ports"] == 31  # virtio-serial-pci's default max_ports
    assert part.fields["nr_active_ports"] == len(part.fields["ports"])


def test_undescribed_device_part_stays_opaque_and_exact() -> None:
    raw = next(
        r for _, d, r in _virtio_sections(DATA / "q72-pc-q35-7.2-net.mig") if d == "virtio-net"
    )
    state = decode_virtio(raw, "virtio-net")
    assert isinstance(state.fields["device"], bytes)
    assert encode_virtio(state) == raw


@pytest.mark.parametrize("cut", [0, 3, 200, 300, 1000, 20000, -5])
def test_truncated_virtio_data_raises_miglab_errors(cut: int) -> None:
    raw = _balloon(DATA / "q100-pc-q35-10.0-virtio.mig")
    with pytest.raises(MiglabError):
        decode_virtio(raw[:cut], "virtio-balloon")


@pytest.mark.parametrize("version", ["10.0", "7.2"])
def test_knowledge_layouts_are_the_reference_streams(version: str) -> None:
    lay = KNOWLEDGE["devices"]["virtio-balloon"]["layouts"][version]
    for fam in ("q35", "i440fx"):
        ref = DATA / lay["reference"].replace("q35", fam)
        state = decode_virtio(_balloon(ref), "virtio-balloon")
        assert state.fields["pci_dev"].fields["config"].hex() == lay["config"]
        assert msix_vectors_of(state.desc) == lay["msix_vectors"]


CASES = [
    ("q100-pc-q35-10.0-virtio.mig", "q72-pc-q35-7.2-virtio.mig", "7.2", "q35"),
    ("q72-pc-q35-7.2-virtio.mig", "q100-pc-q35-10.0-virtio.mig", "10.0", "q35"),
    ("q100-pc-i440fx-10.0-virtio.mig", "q72-pc-i440fx-7.2-virtio.mig", "7.2", "i440fx"),
    ("q72-pc-i440fx-7.2-virtio.mig", "q100-pc-i440fx-10.0-virtio.mig", "10.0", "i440fx"),
]


@pytest.mark.parametrize(
    ("src", "ref", "to", "fam"), CASES, ids=[c[0] + "->" + c[2] for c in CASES]
)
def test_converted_balloon_is_what_the_destination_writes(
    src: str, ref: str, to: str, fam: str
) -> None:
    out, report = convert_stream(
        miglab.load(DATA / src),
        to_qemu=to,
        machine=f"pc-{fam}-{to}",
        allow_guest_visible=True,
        keep_layouts=False,
    )
    assert report.options == ()
    assert _balloon_of(out) == _balloon(DATA / ref)
    visible = [c for c in report.guest_visible if c.device == "virtio-balloon"]
    assert [c.path for c in visible] == ["virtio"]
    assert "pci_dev/config" in visible[0].reason and "msix_table" in visible[0].reason
    # the other virtio devices are already the same in both builds
    others = {c.device for c in report if c.device.startswith("virtio")}
    assert others == {"virtio-balloon"}


def _balloon_of(stream: miglab.Stream) -> bytes:
    return next(
        bytes(x.payload.fields["virtio"])
        for x in stream.sections
        if x.name.endswith("virtio-balloon")
    )


def test_destination_keeps_the_balloon_layout_through_a_property() -> None:
    """By default a destination build whose virtio-balloon-pci takes ``vectors`` (10.0) is
    told to keep the source's count (hw_compat_9_2 gives 7.2 machines 0): no state change."""
    src = miglab.load(DATA / "q72-pc-q35-7.2-virtio.mig")
    out, report = convert_stream(src, to_qemu="10.0", machine="pc-q35-10.0")
    assert report.options == ("-global", "virtio-balloon-pci.vectors=0")
    assert not [c for c in report if c.device.startswith("virtio")]
    assert _balloon_of(out) == _balloon_of(src)


def test_guest_visible_balloon_change_is_refused_unless_allowed() -> None:
    with pytest.raises(CompatError, match="virtio-balloon:virtio"):
        convert_stream(
            miglab.load(DATA / "q100-pc-q35-10.0-virtio.mig"), to_qemu="7.2", machine="pc-q35-7.2"
        )


def test_same_layout_source_is_left_alone() -> None:
    # QEMU 10.0 on the 7.2 machine type already gives the balloon 7.2's layout
    _, report = convert_stream(
        miglab.load(DATA / "q100-pc-q35-7.2-virtio.mig"), to_qemu="7.2", machine="pc-q35-7.2"
    )
    assert not [c for c in report if c.device == "virtio-balloon"]


def test_msix_the_guest_enabled_is_not_taken_away() -> None:
    s = miglab.load(DATA / "q100-pc-q35-10.0-virtio.mig")
    for x in s.sections:
        if x.name.endswith("virtio-balloon"):
            state = decode_virtio(bytes(x.payload.fields["virtio"]), "virtio-balloon")
            config = bytearray(state.fields["pci_dev"].fields["config"])
            config[0x98 + 3] |= 0x80  # MSI-X message control: enable
            state.fields["pci_dev"] = dataclasses.replace(
                state.fields["pci_dev"],
                fields={**state.fields["pci_dev"].fields, "config": bytes(config)},
            )
            x.payload.fields["virtio"] = encode_virtio(state)
    with pytest.raises(CompatError, match="enabled MSI-X"):
        convert_stream(s, to_qemu="7.2", machine="pc-q35-7.2", allow_guest_visible=True)
