"""Device models load real sections through their own visit code and save them back byte-exact."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

import miglab
from miglab.devices import (
    DEVICES,
    E1000,
    I8254,
    MC146818RTC,
    FwCfg,
    ISASerial,
    PCISerial,
    SerialState,
)
from miglab.devices.e1000 import REGISTERS
from miglab.devices.rtc import VMSTATE_RTC
from miglab.devices.serial_legacy import serial_load, serial_save, serial_visit, serial_visit_file
from miglab.devices.state import state_from_values
from miglab.errors import MigrationFormatError, TruncatedStreamError, VisitorError
from miglab.stream.device_sections import device_for_section, load_device, section_payload
from miglab.visitors import (
    QEMUFileInputVisitor,
    QEMUFileOutputVisitor,
    QEMUFileReader,
    QEMUFileWriter,
)
from miglab.vmstate import VMState, visit_vmstate
from tests.helpers import STREAMS, recipe


@cache
def _load(path: Path) -> tuple[bytes, miglab.Stream]:
    data = path.read_bytes()
    return data, miglab.load(data)


def _sections(cls: type) -> list[tuple[Path, miglab.Section]]:
    out = []
    for path in STREAMS:
        _, stream = _load(path)
        out += [(path, s) for s in stream.sections if device_for_section(s) is cls]
    return out


def _cases(cls: type) -> list:
    """Sections miglab decoded from a vmdesc, to compare the model's values with."""
    return [
        pytest.param(p, s.name, id=f"{p.stem}:{s.name}")
        for p, s in _sections(cls)
        if isinstance(s.payload, VMState)
    ]


def _section(path: Path, name: str) -> tuple[bytes, miglab.Section]:
    data, stream = _load(path)
    return data, next(s for s in stream.sections if s.name == name)


def test_every_model_is_found_in_real_streams_of_both_qemu_versions() -> None:
    for cls in DEVICES.values():
        found = _sections(cls)
        versions = {recipe(p)["qemu"] for p, _ in found}
        machines = {recipe(p)["machine"] for p, _ in found}
        assert versions == {"7.2", "10.0"}, cls
        assert len(machines) >= 2, cls


@pytest.mark.parametrize("cls", list(DEVICES.values()), ids=list(DEVICES))
def test_device_round_trips_every_real_section_byte_exact(cls: type) -> None:
    for path, section in _sections(cls):
        data, _ = _load(path)
        wire = section_payload(section, data)
        device = load_device(section, data, model=cls)
        assert device.version_id == section.version_id
        assert device.to_bytes() == wire, f"{path.name}:{section.name}"
        # The stream writer's walker re-encodes the same payload.
        if isinstance(section.payload, VMState):
            assert section_payload(section) == wire


def _decoded(section: miglab.Section) -> dict:
    assert isinstance(section.payload, VMState)
    return section.payload.fields


@pytest.mark.parametrize(("path", "name"), _cases(MC146818RTC))
def test_rtc_values_match_the_vmdesc_decoding(path: Path, name: str) -> None:
    data, section = _section(path, name)
    rtc = load_device(section, data, model=MC146818RTC)
    f = _decoded(section)
    assert rtc.cmos_data == f["cmos_data"]
    assert rtc.cmos_index == f["cmos_index"]
    assert (rtc.periodic_timer, rtc.update_timer) == (f["periodic_timer"], f["update_timer"])
    assert (rtc.base_rtc, rtc.offset, rtc.next_alarm_time) == (
        f["base_rtc"],
        f["offset"],
        f["next_alarm_time"],
    )
    assert rtc.unused0 == f["unused[0]"] and rtc.unused1 == f["unused[1]"]
    # CMOS register 0x0B (status B) of a reset PC RTC has 24-hour mode set (bit 1).
    assert rtc.cmos_data[0x0B] & 0x02


@pytest.mark.parametrize(("path", "name"), _cases(I8254))
def test_pit_values_match_the_vmdesc_decoding(path: Path, name: str) -> None:
    data, section = _section(path, name)
    pit = load_device(section, data, model=I8254)
    f = _decoded(section)
    assert pit.channels[0].irq_disabled == f["channels[0].irq_disabled"]
    for ch, st in zip(pit.channels, f["channels"], strict=True):
        assert (ch.count, ch.mode, ch.gate, ch.count_load_time) == (
            st["count"],
            st["mode"],
            st["gate"],
            st["count_load_time"],
        )
    # The second copy of channel 0's next_transition_time is the one loaded.
    assert pit.channels[0].next_transition_time == f["channels[0].next_transition_time"]


@pytest.mark.parametrize(("path", "name"), _cases(FwCfg))
def test_fw_cfg_values_and_subsections_match(path: Path, name: str) -> None:
    data, section = _section(path, name)
    fw = load_device(section, data, model=FwCfg)
    f = _decoded(section)
    assert (fw.cur_entry, fw.cur_offset) == (f["cur_entry"], f["cur_offset[1]"])
    subs = section.payload.subsections
    assert fw.dma_enabled == ("fw_cfg/dma" in subs)
    assert fw.acpi_mr_restore == ("fw_cfg/acpi_mr" in subs)
    if fw.dma_enabled:
        assert fw.dma_addr == subs["fw_cfg/dma"]["dma_addr"]
    if fw.acpi_mr_restore:
        assert fw.table_mr_size == subs["fw_cfg/acpi_mr"]["table_mr_size"]


@pytest.mark.parametrize(("path", "name"), _cases(ISASerial) + _cases(PCISerial))
def test_serial_values_match(path: Path, name: str) -> None:
    data, section = _section(path, name)
    cls = device_for_section(section)
    assert cls is not None
    dev = load_device(section, data, model=cls)
    f = _decoded(section)["state"]
    for reg in ("divider", "rbr", "ier", "iir", "lcr", "mcr", "lsr", "msr", "scr", "fcr_vmstate"):
        assert getattr(dev.state, reg) == f[reg], reg


@pytest.mark.parametrize(("path", "name"), _cases(E1000))
def test_e1000_values_match_and_register_offsets_are_right(path: Path, name: str) -> None:
    data, section = _section(path, name)
    nic = load_device(section, data, model=E1000)
    f = _decoded(section)
    pci = f["parent_obj"]
    assert nic.parent_obj.config == pci["config[0]"]
    assert b"".join(x.to_bytes(4, "big") for x in nic.parent_obj.irq_state) == pci["irq_state"]
    assert nic.eeprom_data == f["eeprom_data"] and nic.phy_reg == f["phy_reg"]
    assert nic.tx.data == f["tx.data"]
    # The MAC address the stream was made with is in RA[0..1] and the EEPROM.
    mac = bytes.fromhex(recipe(path)["devices"][0].split("mac=")[1].replace(":", ""))
    ra = REGISTERS["RA"]
    low, high = nic.mac_reg[ra], nic.mac_reg[ra + 1] & 0xFFFF  # RAH bit 31: address valid
    assert low.to_bytes(4, "little") + high.to_bytes(2, "little") == mac
    assert b"".join(w.to_bytes(2, "little") for w in nic.eeprom_data[:3]) == mac
    subs = section.payload.subsections
    assert nic.full_mac and "e1000/full_mac_state" in subs
    full = subs["e1000/full_mac_state"]["mac_reg"]
    assert nic.mac_reg == full
    # Each register sent by name sits at its offset in the full array: the
    # offsets in miglab/knowledge/e1000-registers.json are QEMU's.
    for key, value in f.items():
        if key.startswith("mac_reg[") and not key[8].isdigit():
            assert full[REGISTERS[key[8:-1]]] == value, key


def test_e1000_error_names_the_register_path() -> None:
    nic = E1000()
    nic.mac_reg[3] = 1 << 32
    nic.full_mac = True
    with pytest.raises(VisitorError) as err:
        nic.to_bytes()
    assert err.value.path == "e1000.e1000/full_mac_state.mac_reg[3]"
    nic.mac_reg[3] = 0
    tree = nic.to_tree()
    tree["e1000/full_mac_state"]["mac_reg"][3] = "x"
    with pytest.raises(VisitorError) as err:
        E1000.from_tree(tree)
    assert err.value.path == "e1000.e1000/full_mac_state.mac_reg[3]"


def test_loading_rejects_trailing_and_missing_bytes() -> None:
    data, section = _section(STREAMS[0], "mc146818rtc")
    wire = section_payload(section, data)
    with pytest.raises(MigrationFormatError) as err:
        MC146818RTC.from_bytes(wire + b"\0", section.version_id)
    assert err.value.offset == len(wire)
    with pytest.raises(TruncatedStreamError) as err:
        MC146818RTC.from_bytes(wire[:-3], section.version_id)
    assert err.value.path == "mc146818rtc.next_alarm_time"
    assert err.value.offset == len(wire) - 8


def test_subsection_needed_predicates_decide_what_is_sent() -> None:
    rtc = MC146818RTC(irq_reinject_on_ack_count=7)
    wire = rtc.to_bytes()
    name = b"mc146818rtc/irq_reinject_on_ack_count"
    assert wire.endswith(b"\x05" + bytes([len(name)]) + name + (1).to_bytes(4, "big") + b"\0\x07")
    back = MC146818RTC.from_bytes(wire)
    assert back == rtc
    assert MC146818RTC().to_bytes().find(b"\x05" + bytes([len(name)])) == -1
    # Serial: every subsection round-trips once its needed() is true.
    s = ISASerial()
    st = s.state
    st.ier, st.iir, st.thr_ipending = 0x02, 0x01, 1  # differs from what IIR implies
    st.tsr_retry, st.thr, st.tsr = 3, 0x41, 0x42
    st.recv_fifo.num, st.recv_fifo.data = 2, b"hi" + bytes(14)
    st.xmit_fifo.num, st.xmit_fifo.head = 1, 5
    st.fifo_timeout_timer, st.timeout_ipending = 123456789, 1
    st.poll_msl, st.modem_status_poll = 1, 987
    wire = s.to_bytes()
    for sub in ("thr_ipending", "tsr", "recv_fifo", "xmit_fifo", "fifo_timeout_timer", "poll"):
        assert f"serial/{sub}".encode() in wire
    assert ISASerial.from_bytes(wire) == s


def test_rtc_hand_built_description_drives_the_same_bytes() -> None:
    for path, section in _sections(MC146818RTC):
        data, _ = _load(path)
        rtc = load_device(section, data, model=MC146818RTC)
        state = state_from_values(VMSTATE_RTC, rtc, section.version_id)
        w = QEMUFileWriter()
        visit_vmstate(QEMUFileOutputVisitor(w), VMSTATE_RTC, state)
        assert w.getvalue() == rtc.to_bytes()
        back = visit_vmstate(
            QEMUFileInputVisitor(QEMUFileReader(w.getvalue())), VMSTATE_RTC, None, 3
        )
        assert back.fields == state.fields


# --- the serial handler's conversion, step by step, on real sections ------
def _serial_sections() -> list:
    return _cases(ISASerial)


@pytest.mark.parametrize(("path", "name"), _serial_sections())
def test_serial_step1_legacy_put_get_keeps_the_bytes(path: Path, name: str) -> None:
    data, section = _section(path, name)
    wire = section_payload(section, data)
    s = SerialState()
    r = QEMUFileReader(wire)
    serial_load(r, s, section.version_id)
    assert r.pos == len(wire)
    w = QEMUFileWriter()
    serial_save(w, s, section.version_id)
    assert w.getvalue() == wire


@pytest.mark.parametrize(("path", "name"), _serial_sections())
def test_serial_step2_visitor_found_through_the_qemufile_keeps_the_bytes(
    path: Path, name: str
) -> None:
    data, section = _section(path, name)
    wire = section_payload(section, data)
    s = SerialState()
    r = QEMUFileReader(wire)
    QEMUFileInputVisitor(r)  # registers itself on r; the handler finds it
    serial_visit_file(r, s, section.version_id)
    legacy = SerialState()
    serial_load(QEMUFileReader(wire), legacy, section.version_id)
    assert s == legacy
    w = QEMUFileWriter()
    QEMUFileOutputVisitor(w)
    serial_visit_file(w, s, section.version_id)
    assert w.getvalue() == wire


@pytest.mark.parametrize(("path", "name"), _serial_sections())
def test_serial_step3_qemufile_gone_keeps_the_bytes(path: Path, name: str) -> None:
    data, section = _section(path, name)
    wire = section_payload(section, data)
    s = SerialState()
    serial_visit(QEMUFileInputVisitor(QEMUFileReader(wire)), s, section.version_id)
    w = QEMUFileWriter()
    serial_visit(QEMUFileOutputVisitor(w), s, section.version_id)
    assert w.getvalue() == wire
    # ...and the finished model (with subsections) agrees.
    assert load_device(section, data, model=ISASerial).state == s
    assert ISASerial(state=s).to_bytes() == wire


def test_step2_without_a_registered_visitor_is_an_error() -> None:
    with pytest.raises(VisitorError):
        serial_visit_file(QEMUFileWriter(), SerialState())
