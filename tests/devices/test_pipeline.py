"""The marshalling pipeline (device -> tree -> filters -> JSON/CBOR -> tree -> device), and
the filters as arguments of every real path: load, convert, compat and the proxy's Conversion."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import miglab
from miglab import encoders
from miglab.compat import convert_stream
from miglab.compat.qemu import Conversion
from miglab.devices import E1000, MC146818RTC, FwCfg
from miglab.devices.pipeline import decode_tree, encode_tree, marshal, tree_to_qemufile, unmarshal
from miglab.devices.rtc import VMSTATE_RTC
from miglab.devices.state import state_from_values
from miglab.errors import EncodingError, VisitorError
from miglab.stream.device_sections import device_for_section, load_device, section_payload
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
from miglab.vmstate.filters import ALL, Filters
from tests.helpers import DATA, STREAMS


def _devices():
    data = STREAMS[0].read_bytes()
    stream = miglab.load(data)
    for s in stream.sections:
        cls = device_for_section(s)
        if cls is not None:
            yield load_device(s, data, model=cls), section_payload(s, data)


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

    def rename_out(tree: dict) -> dict:
        seen.append("out")
        tree["index"] = tree.pop("cmos_index")
        return tree

    def rename_in(tree: dict) -> dict:
        seen.append("in")
        tree["cmos_index"] = tree.pop("index") + 1
        return tree

    def not_mine(tree: dict) -> dict:
        raise AssertionError("a filter for e1000 ran on the RTC")

    rtc = MC146818RTC(cmos_index=0x0B)
    f = Filters.of(marshal={"mc146818rtc": rename_out, "e1000": not_mine}, unmarshal=rename_in)
    wire = marshal(rtc, "cbor", filters=f)
    assert "cmos_index" not in decode_tree(wire, "cbor")
    back = unmarshal(wire, MC146818RTC, "cbor", filters=f)
    assert back.cmos_index == 0x0C and seen == ["out", "in"]
    assert unmarshal(marshal(rtc, "cbor"), MC146818RTC, "cbor") == rtc  # no filters: none ran
    assert seen == ["out", "in"]


def test_unmarshal_errors_name_the_member() -> None:
    def drop(tree: dict) -> dict:
        del tree["fw_cfg/dma"]["dma_addr"]
        return tree

    with pytest.raises(VisitorError) as err:
        unmarshal(marshal(FwCfg(dma_enabled=True)), FwCfg, filters=Filters.of(unmarshal=drop))
    assert err.value.path == "fw_cfg.fw_cfg/dma.dma_addr"
    with pytest.raises(EncodingError):
        decode_tree(b"{not json", "json")
    with pytest.raises(EncodingError):
        encode_tree({"x": object()}, "json")


# --- filters on the real paths: load, convert, compat, the proxy's Conversion -----------
# The rtl8139 of the -net streams was started with mac=52:54:00:12:34:02 and the e1000 with
# mac=52:54:00:12:34:01 (data/README.md); the rtl8139 keeps its MAC twice (phys and
# conf.macaddr), both in its section.
NET = DATA / "q100-pc-q35-10.0-net.mig"
MAC, NEW = bytes.fromhex("525400123402"), bytes.fromhex("525400abcdef")
E1000_RAL = 0x12005452  # RAL of 52:54:00:12:34:01: the first four bytes, little-endian


def _new_mac(seen: list[bytes]) -> Callable[[dict], dict]:
    def fn(tree: dict) -> dict:
        seen.append(bytes(tree["phys"]))
        tree["phys"] = tree["conf.macaddr"] = NEW
        return tree

    return fn


def test_load_runs_the_unmarshal_filters_on_every_device_read() -> None:
    seen: list[bytes] = []
    trees: list[dict] = []
    f = Filters.of(unmarshal={"rtl8139": _new_mac(seen), ALL: lambda t: trees.append(t) or t})
    stream = miglab.load(NET, filters=f)
    assert seen == [MAC]
    devices = [s for s in stream.sections if isinstance(s.payload, miglab.VMState)]
    assert len(trees) == len(devices) > 20
    assert stream.device("rtl8139").payload.fields["phys"] == NEW
    before = NET.read_bytes()
    assert before.count(MAC) == 2
    assert stream.to_bytes() == before.replace(MAC, NEW)


def test_two_loads_with_different_filters_share_nothing() -> None:
    mine: list[bytes] = []
    theirs: list[int] = []
    a = miglab.load(NET, filters=Filters.of(unmarshal={"rtl8139": _new_mac(mine)}))
    b = miglab.load(
        NET,
        filters=Filters.of(unmarshal={"e1000": lambda t: theirs.append(t["mac_reg[0]"][0]) or t}),
    )
    plain = miglab.load(NET)
    assert mine == [MAC] and theirs == [E1000_RAL]
    assert a.device("rtl8139").payload.fields["phys"] == NEW
    assert b.device("rtl8139").payload.fields["phys"] == MAC
    assert plain.to_bytes() == NET.read_bytes()


def test_convert_runs_the_marshal_filters_out_and_the_unmarshal_filters_in() -> None:
    stream = miglab.load(NET)
    out: list[bytes] = []
    data = encoders.encode(stream, "cbor", filters=Filters.of(marshal={"rtl8139": _new_mac(out)}))
    assert out == [MAC]
    assert stream.device("rtl8139").payload.fields["phys"] == MAC  # the caller's tree is kept
    seen: list[bytes] = []
    filters = Filters.of(unmarshal={"rtl8139": lambda t: seen.append(bytes(t["phys"])) or t})
    back = encoders.decode(data, filters=filters)
    assert seen == [NEW]
    assert back.to_bytes() == NET.read_bytes().replace(MAC, NEW)


def test_compat_runs_the_filters_around_the_transforms() -> None:
    stream = miglab.load(NET)
    kw = {"to_qemu": "7.2", "machine": "pc-q35-7.2", "allow_guest_visible": True}
    plain, report = convert_stream(stream, **kw)
    assert report.changes  # the transforms ran
    came: list[bytes] = []
    went: list[bytes] = []
    f = Filters.of(
        unmarshal={"rtl8139": lambda t: came.append(bytes(t["phys"])) or t},
        marshal={"rtl8139": _new_mac(went)},
    )
    out, filtered = convert_stream(stream, **kw, filters=f)
    assert came == went == [MAC] and filtered == report
    assert out.to_bytes() == plain.to_bytes().replace(MAC, NEW)
    assert miglab.load(out.to_bytes()).device("rtl8139").payload.fields["phys"] == NEW


def test_the_proxys_conversion_takes_the_filters_record_by_record() -> None:
    stream = miglab.load(NET)
    section = stream.device("rtl8139")
    seen: list[bytes] = []

    def conversion(filters: Filters | None) -> Conversion:
        return Conversion(
            source_machine=stream.machine, to_qemu="10.0", machine="pc-q35-10.0", filters=filters
        )

    sent = conversion(Filters.of(marshal={"rtl8139": _new_mac(seen)})).record(section)
    assert isinstance(sent, miglab.Section) and sent.payload.fields["phys"] == NEW
    assert seen == [MAC] and section.payload.fields["phys"] == MAC
    assert conversion(None).record(section) is section


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
