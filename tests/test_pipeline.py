"""The marshalling pipeline: device -> tree -> filters -> JSON/CBOR -> tree -> device."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import STREAMS

import miglab
from miglab.compat import filters
from miglab.devices import E1000, MC146818RTC, FwCfg, device_for_section, section_payload
from miglab.devices.pipeline import decode_tree, encode_tree, marshal, tree_to_qemufile, unmarshal
from miglab.devices.rtc import VMSTATE_RTC
from miglab.devices.state import state_from_values
from miglab.errors import EncodingError, VisitorError
from miglab.visitors import (
    ObjectOutputVisitor,
    QEMUFileWriter,
    Visitor,
    visit_end_struct,
    visit_start_struct,
    visit_type_bool,
    visit_type_u32,
)
from miglab.vmstate import visit_vmstate


@pytest.fixture(autouse=True)
def _no_filters() -> Iterator[None]:
    filters.clear_filters()
    yield
    filters.clear_filters()


def _devices():
    data = STREAMS[0].read_bytes()
    stream = miglab.load(data)
    for s in stream.sections:
        cls = device_for_section(s)
        if cls is not None:
            yield cls.from_section(s, data), section_payload(s, data)


@pytest.mark.parametrize("fmt", ["json", "cbor"])
def test_real_devices_survive_marshal_unmarshal_and_reach_the_same_wire(fmt: str) -> None:
    n = 0
    for device, wire in _devices():
        back = unmarshal(marshal(device, fmt), type(device), fmt)
        assert back == device
        w = QEMUFileWriter()
        tree_to_qemufile(decode_tree(encode_tree(device.to_tree(), fmt), fmt), type(device), w)
        assert w.getvalue() == wire
        n += 1
    assert n >= 3


def test_json_carries_bytes_as_base64() -> None:
    rtc = MC146818RTC(cmos_data=bytes(range(128)))
    text = marshal(rtc, "json").decode()
    assert '"cmos_data":{"$bytes":"AAECAwQF' in text


def test_filters_edit_the_tree_both_ways() -> None:
    seen: list[str] = []

    @filters.register_marshal_filter
    def rename_out(tree: dict) -> dict:
        seen.append("out")
        tree["index"] = tree.pop("cmos_index")
        return tree

    @filters.register_unmarshal_filter
    def rename_in(tree: dict) -> dict:
        seen.append("in")
        tree["cmos_index"] = tree.pop("index") + 1
        return tree

    rtc = MC146818RTC(cmos_index=0x0B)
    wire = marshal(rtc, "cbor")
    assert "cmos_index" not in decode_tree(wire, "cbor")
    back = unmarshal(wire, MC146818RTC, "cbor")
    assert back.cmos_index == 0x0C and seen == ["out", "in"]


def test_unmarshal_errors_name_the_member() -> None:
    @filters.register_unmarshal_filter
    def drop(tree: dict) -> dict:
        del tree["fw_cfg/dma"]["dma_addr"]
        return tree

    with pytest.raises(VisitorError) as err:
        unmarshal(marshal(FwCfg(dma_enabled=True)), FwCfg)
    assert err.value.path == "fw_cfg.fw_cfg/dma.dma_addr"
    with pytest.raises(EncodingError):
        decode_tree(b"{not json", "json")
    with pytest.raises(EncodingError):
        encode_tree({"x": object()}, "json")


def test_tree_to_qemufile_with_a_description_and_with_a_visit_function() -> None:
    rtc = MC146818RTC(cmos_index=3, irq_reinject_on_ack_count=2)
    v = ObjectOutputVisitor()
    visit_vmstate(v, VMSTATE_RTC, state_from_values(VMSTATE_RTC, rtc))
    w = QEMUFileWriter()
    tree_to_qemufile(v.complete(), VMSTATE_RTC, w)
    assert w.getvalue() == rtc.to_bytes()

    def visit_port(v: Visitor, port: dict | None) -> dict:
        port = dict(port or {})
        visit_start_struct(v, "port")
        port["id"] = visit_type_u32(v, "id", port.get("id"))
        port["throttled"] = visit_type_bool(v, "throttled", port.get("throttled"))
        visit_end_struct(v)
        return port

    w = QEMUFileWriter()
    tree_to_qemufile({"id": 7, "throttled": True}, visit_port, w)
    assert w.getvalue() == b"\0\0\0\x07\x01"
    with pytest.raises(VisitorError) as err:
        tree_to_qemufile({"id": 7, "throttled": 1}, visit_port, QEMUFileWriter())
    assert err.value.path == "port.throttled"


def test_e1000_tree_is_plain_data() -> None:
    tree = E1000().to_tree()
    assert isinstance(tree["mac_reg[CTRL]"], int) and len(tree["tx.data"]) == 0x10000
    assert unmarshal(marshal(E1000(), "cbor"), E1000, "cbor") == E1000()
