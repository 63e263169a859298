"""miglab.compat.qemu across four builds: the knowledge files, the chained planner, slirp
instance ids and MSI-X vectors kept by destination properties (data/ streams, no QEMU)."""

from __future__ import annotations

import json

import pytest

import miglab
from miglab.compat import convert_stream, plan
from miglab.compat.qemu import machine_generation
from tests.helpers import DATA, ROOT

KNOWLEDGE = ROOT / "miglab" / "knowledge"


def test_every_rule_cites_its_qemu_source() -> None:
    qemu = json.loads((KNOWLEDGE / "compat-qemu.json").read_text())
    virtio = json.loads((KNOWLEDGE / "compat-virtio.json").read_text())
    rules = (
        qemu["transforms"]
        + qemu["pci"]["rules"]
        + qemu["pci"]["slot_rules"]["rules"]
        + qemu["sections"]["rules"]
        + virtio["features"]["rules"]
        + virtio["subsections"]["rules"]
    )
    assert all(r.get("source") for r in rules), [r for r in rules if not r.get("source")]
    assert all(d.get("vectors_source") for d in virtio["devices"].values())


def test_a_rule_between_neighbours_runs_on_the_longest_way() -> None:
    hpet = plan("hpet", "11.1", "5.2")
    assert [(t.src, t.dst) for t in hpet.steps] == [("10.0", "7.2")]
    e1000e = plan("e1000e", "machine:11.1", "machine:5.2")
    assert ("machine:10.0", "machine:7.2") in [(t.src, t.dst) for t in e1000e.steps]
    # the PCI rule runs on every hop; 7.2 -> 5.2 also clears VIRTIO_F_RING_RESET
    assert [(t.src, t.dst, t.description) for t in e1000e.steps if t.device == "*"] == [
        ("machine:11.1", "machine:10.0", "read-only PCI config bits"),
        ("machine:10.0", "machine:7.2", "read-only PCI config bits"),
        (
            "machine:7.2",
            "machine:5.2",
            "virtio feature VIRTIO_F_RING_RESET not offered on 5.2 machines",
        ),
        ("machine:7.2", "machine:5.2", "read-only PCI config bits"),
    ]
    # per hop the device's own step, then "*": 5.2->7.2, 7.2->10.0 (balloon vectors), 10.0->11.1
    assert [t.device for t in plan("virtio-balloon", "machine:5.2", "machine:11.1").steps] == [
        "*",
        "virtio-balloon",
        "*",
        "*",
    ]


def _port_configs(stream: miglab.Stream) -> dict[str, bytes]:
    return {
        r.name: bytes(r.payload.fields["parent_obj.parent_obj.parent_obj"].fields["config[1]"])
        for r in stream.records
        if getattr(r, "name", "").endswith("/pcie-root-port")
    }


def test_occupied_root_ports_get_the_slot_status_of_pc_q35_5_2() -> None:
    """QEMU 7.2's own stream on pc-q35-5.2 (same devices as data/q72-pc-q35-7.2-pcie.mig, made
    with make_stream) differs in these two bytes of each occupied pcie-root-port: LNKSTA
    Data Link Layer Link Active (0x67 bit 5) and SLTSTA Presence Detect State (0x6e bit 6);
    QEMU 7.2 refused the stream without them.  Both ports of the stream hold a device."""
    src = miglab.load(DATA / "q72-pc-q35-7.2-pcie.mig")
    before = _port_configs(src)
    assert len(before) == 2
    out, report = convert_stream(src, to_qemu="7.2", machine="pc-q35-5.2", allow_guest_visible=True)
    for name, config in _port_configs(out).items():
        want = bytearray(before[name])
        assert want[0x67] & 0x20 == 0 and want[0x6E] & 0x40 == 0
        want[0x67] |= 0x20
        want[0x6E] |= 0x40
        assert config == want, name
    changed = [c for c in report.guest_visible if c.section and c.section.endswith("root-port")]
    assert len(changed) == 2 and all("Presence Detect" in c.reason for c in changed)
    back, _ = convert_stream(
        miglab.load(out.to_bytes()), to_qemu="7.2", machine="pc-q35-7.2", from_qemu="7.2",
        allow_guest_visible=True,
    )  # fmt: skip
    assert _port_configs(back) == before


@pytest.mark.parametrize(
    ("machine", "generation"),
    [("pc-q35-5.2", "machine:5.2"), ("pc-i440fx-11.1", "machine:11.1"), ("pc-q35-9.0", None),
     ("pc-q35-6.0", None), (None, None)],
)  # fmt: skip
def test_machine_generations(machine: str | None, generation: str | None) -> None:
    assert machine_generation(machine) == generation


def test_slirp_instances_are_renumbered_both_ways() -> None:
    """<= 8.1 registers every user-mode netdev's slirp as instance 0, >= 8.2 as 0, 1."""
    new = miglab.load(DATA / "live-q100-pc-q35-10.0-dirtier.mig")
    out, report = convert_stream(new, to_qemu="7.2", machine="pc-q35-7.2", allow_guest_visible=True)
    assert [
        s.instance_id for s in out.sections if s.name == "slirp" and s.kind.has_full_header
    ] == [0, 0]
    assert [c.before for c in report if c.path == "instance_id"] == [1]
    old = miglab.load(DATA / "live-q72-pc-q35-7.2-dirtier.mig")
    out, report = convert_stream(
        old, to_qemu="10.0", machine="pc-q35-10.0", allow_guest_visible=True
    )
    assert [
        s.instance_id for s in out.sections if s.name == "slirp" and s.kind.has_full_header
    ] == [0, 1]
    assert all(c.classification == "safe" for c in report if c.path == "instance_id")


def test_renumbered_stream_reads_back() -> None:
    new = miglab.load(DATA / "live-q100-pc-q35-10.0-dirtier.mig")
    out, _ = convert_stream(new, to_qemu="7.2", machine="pc-q35-7.2", allow_guest_visible=True)
    again = miglab.load(miglab.stream.stream_to_bytes(out))
    assert [
        s.instance_id for s in again.sections if s.name == "slirp" and s.kind.has_full_header
    ] == [0, 0]
