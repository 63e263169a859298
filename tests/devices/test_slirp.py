"""miglab.devices.slirp / slirp_legacy: libslirp's section, decoded, on real QEMU streams.

Every step of the conversion from libslirp's put/get calls to visitors keeps the
bytes of real ``slirp`` sections (QEMU 7.2 and 10.0: the empty socket list of an
idle user-mode network, and a guestfwd socket holding iPXE's HTTP connection);
the decoded values are checked against how the streams were made (addresses,
ports and MAC from the recipe), and the state is a tree like any device's.  Real QEMU
loading the state miglab rewrote is ``tests/judge/devices/test_slirp.py``.
"""

from __future__ import annotations

import copy
import json
import socket
import struct
from functools import cache
from pathlib import Path

import pytest

import miglab
from miglab import encoders
from miglab.compat.edit import Edit
from miglab.devices.slirp import SOCKET_TAG, read_slirp_state
from miglab.devices.slirp_legacy import slirp_state_load, slirp_state_save, slirp_visit_file
from miglab.errors import MigrationFormatError, VisitorError
from miglab.stream.device_sections import section_payload
from miglab.stream.model import Opaque
from miglab.stream.vmdesc import vmdesc_entry
from miglab.visitors import (
    ObjectOutputVisitor,
    QEMUFileInputVisitor,
    QEMUFileOutputVisitor,
    QEMUFileReader,
    QEMUFileWriter,
)
from miglab.vmstate import VMState, visit_vmstate
from tests.helpers import LIVE, recipe

TCP = [p for p in LIVE if recipe(p)["guest"] == "ipxe-http"]
TCPS_ESTABLISHED = 4  # libslirp tcp_fsm.h


@cache
def _load(path: Path) -> tuple[bytes, miglab.Stream]:
    data = path.read_bytes()
    return data, miglab.load(data)


def _slirp_sections(path: Path) -> list[miglab.Section]:
    return [s for s in _load(path)[1].sections if s.name == "slirp"]


CASES = [
    pytest.param(p, i, id=f"{p.stem}:{i}") for p in LIVE for i in range(len(_slirp_sections(p)))
]


def _wire(path: Path, i: int) -> tuple[miglab.Section, bytes]:
    section = _slirp_sections(path)[i]
    return section, section_payload(section, _load(path)[0])


def _tree(section: miglab.Section) -> dict:
    assert isinstance(section.payload, VMState)
    v = ObjectOutputVisitor()
    visit_vmstate(v, section.payload.desc, section.payload, section.version_id)
    return v.complete()


def _params() -> list[tuple[Path, int]]:
    return [(p, i) for p in LIVE for i in range(len(_slirp_sections(p)))]


def test_real_streams_of_both_builds_carry_both_forms() -> None:
    seen = set()
    for p, i in _params():
        seen.add((recipe(p)["qemu"], bool(_tree(_wire(p, i)[0])["sockets"])))
    assert seen == {("7.2", False), ("7.2", True), ("10.0", False), ("10.0", True)}


@pytest.mark.parametrize(("path", "i"), CASES)
def test_step1_put_get_keeps_the_bytes(path: Path, i: int) -> None:
    section, wire = _wire(path, i)
    r = QEMUFileReader(wire)
    tree = slirp_state_load(r, section.version_id)
    assert r.pos == len(wire)
    w = QEMUFileWriter()
    slirp_state_save(w, tree)
    assert w.getvalue() == wire


@pytest.mark.parametrize(("path", "i"), CASES)
def test_step2_visitor_through_the_qemufile_keeps_the_bytes(path: Path, i: int) -> None:
    section, wire = _wire(path, i)
    r = QEMUFileReader(wire)
    QEMUFileInputVisitor(r)  # registers itself on r
    tree = slirp_visit_file(r, None, section.version_id)
    assert r.pos == len(wire)
    assert tree == slirp_state_load(QEMUFileReader(wire), section.version_id)
    w = QEMUFileWriter()
    QEMUFileOutputVisitor(w)
    slirp_visit_file(w, tree, section.version_id)
    assert w.getvalue() == wire


@pytest.mark.parametrize(("path", "i"), CASES)
def test_step3_descriptions_and_the_walker_keep_the_bytes(path: Path, i: int) -> None:
    section, wire = _wire(path, i)
    state = read_slirp_state(QEMUFileReader(wire), section.version_id)
    w = QEMUFileWriter()
    visit_vmstate(QEMUFileOutputVisitor(w), state.desc, state, section.version_id)
    assert w.getvalue() == wire
    # The reader used the same model, and the three steps agree value for value.
    assert isinstance(section.payload, VMState)
    assert section.payload.fields == state.fields
    assert _tree(section) == slirp_state_load(QEMUFileReader(wire), section.version_id)


def _forward(path: Path) -> tuple[str, int]:
    netdev = recipe(path)["netdevs"][0]
    rule = next(o for o in netdev.split(",") if o.startswith("guestfwd="))
    _, addr, port = rule.removeprefix("guestfwd=").split("-")[0].split(":")
    return addr, int(port)


def _host(value: int, bits: int) -> int:
    """libslirp's in-memory network-order field, as sent by a little-endian host."""
    return int.from_bytes(value.to_bytes(bits // 8, "little"), "big")


@pytest.mark.parametrize("path", TCP, ids=[p.stem for p in TCP])
def test_the_guestfwd_socket_is_decoded(path: Path) -> None:
    tree = _tree(_slirp_sections(path)[0])
    (so,) = tree["sockets"]
    addr, port = _forward(path)
    assert so["tag"] == SOCKET_TAG
    assert socket.inet_ntoa(struct.pack(">I", _host(so["fhost"]["sin_addr"], 32))) == addr
    assert _host(so["fhost"]["sin_port"], 16) == port
    # The guest end: slirp's first DHCP address, an ephemeral port of iPXE.
    assert socket.inet_ntoa(struct.pack(">I", _host(so["lhost"]["sin_addr"], 32))) == "10.0.2.15"
    assert _host(so["lhost"]["sin_port"], 16) >= 1024
    assert so["so_tcpcb"]["t_state"] == TCPS_ESTABLISHED
    # Both socket buffers travel whole: sb_datalen bytes each, offsets inside.
    for sb in (so["so_rcv"], so["so_snd"]):
        assert len(sb["sb_data"]) == sb["sb_datalen"] > 0
        assert sb["tmp"]["roff"] < sb["sb_datalen"] and sb["tmp"]["woff"] < sb["sb_datalen"]
    # iPXE got its address by DHCP: lease 0 is the NIC's MAC from the recipe.
    mac = recipe(path)["devices"][0].split("mac=")[1].split(",")[0]
    lease = tree["bootp_clients"][0]
    assert lease["allocated"] == 1 and lease["macaddr"] == bytes.fromhex(mac.replace(":", ""))


def test_idle_networks_send_no_socket_and_no_lease() -> None:
    idle = [(p, i) for p, i in _params() if recipe(p)["guest"] == "dirtier"]
    assert len(idle) >= 4  # two user-mode networks per stream
    for p, i in idle:
        tree = _tree(_wire(p, i)[0])
        assert tree["sockets"] == [] and tree["end"] == 0
        assert all(c["allocated"] == 0 for c in tree["bootp_clients"])


@pytest.mark.parametrize("path", TCP, ids=[p.stem for p in TCP])
def test_slirp_fields_show_in_the_fields_frame(path: Path) -> None:
    df = miglab.fields_frame(_load(path)[1])
    rows = df[df["section"] == "slirp"].set_index("path")
    _, port = _forward(path)
    assert _host(int(rows.loc["sockets[0].fhost.sin_port", "value"]), 16) == port
    assert rows.loc["sockets[0].so_tcpcb.t_state", "type"] == "int16"
    # Offsets are where the bytes are in the file.
    data = _load(path)[0]
    at = int(rows.loc["sockets[0].so_tcpcb.t_maxseg", "offset"])
    assert (
        struct.unpack_from(">H", data, at)[0] == rows.loc["sockets[0].so_tcpcb.t_maxseg", "value"]
    )


@pytest.mark.parametrize("path", TCP, ids=[p.stem for p in TCP])
def test_vmdesc_entry_is_qemus_old_style_entry(path: Path) -> None:
    stream = _load(path)[1]
    section = _slirp_sections(path)[0]
    original = next(d for d in stream.vmdesc["devices"] if d["name"] == "slirp")
    assert json.dumps(vmdesc_entry(section)) == json.dumps(original)


@pytest.mark.parametrize("path", TCP, ids=[p.stem for p in TCP])
def test_an_edit_of_the_slirp_state_is_written_and_read_back(path: Path) -> None:
    data, _ = _load(path)
    stream = miglab.load(data)
    section = next(s for s in stream.sections if s.name == "slirp")
    assert isinstance(section.payload, VMState)
    before = section.payload.fields["ip_id"]
    edit = Edit([section.payload])
    edit.set("slirp", "ip_id", 4242, classification="guest-visible", reason="IP ids")
    assert [(c.path, c.before, c.after) for c in edit.report.changes] == [("ip_id", before, 4242)]
    section.payload = edit.states[0]
    out = stream.to_bytes()
    assert len(out) == len(data) and out != data
    again = next(s for s in miglab.load(out).sections if s.name == "slirp")
    assert isinstance(again.payload, VMState)
    assert again.payload.fields["ip_id"] == 4242
    assert again.payload.fields["sockets"] == section.payload.fields["sockets"]


def test_a_value_that_does_not_fit_is_refused_with_its_path() -> None:
    section = _slirp_sections(TCP[0])[0]
    assert isinstance(section.payload, VMState)
    edit = Edit([copy.deepcopy(section.payload)])  # the cached stream stays as read
    edit.set("slirp", "ip_id", 1 << 16, classification="safe")
    with pytest.raises(VisitorError, match="ip_id"):
        visit_vmstate(QEMUFileOutputVisitor(QEMUFileWriter()), edit.states[0].desc, edit.states[0])


def test_a_slirp_section_that_is_not_libslirps_format_is_kept_opaque() -> None:
    """A socket whose buffer length runs past the section: the reader keeps it whole."""
    data = _load(TCP[0])[0]
    section = _slirp_sections(TCP[0])[0]
    header = 1 + 4 + 1 + len(b"slirp") + 4 + 4
    sb_datalen = section.offset + header + 1 + 4 + 8 + 8 + 3 + 4 + 4  # so_rcv.sb_datalen
    bad = bytearray(data)
    bad[sb_datalen : sb_datalen + 4] = struct.pack(">I", 0x7FFFFFFF)
    loaded = miglab.load(bytes(bad))
    (kept,) = [s for s in loaded.sections if s.name == "slirp"]
    assert isinstance(kept.payload, Opaque) and "slirp" in kept.payload.reason
    assert len(kept.payload) == len(section_payload(section, data))
    assert loaded.to_bytes() == bytes(bad)
    with pytest.raises(MigrationFormatError) as err:
        read_slirp_state(QEMUFileReader(section_payload(kept, bytes(bad))))
    assert err.value.offset is not None


@pytest.mark.parametrize("fmt", ["sized", "json", "cbor", "msgpack", "asn1-ber"])
def test_every_self_describing_encoder_carries_the_slirp_state(fmt: str) -> None:
    """The descriptions are plain data (no predicates), so the tree formats keep them."""
    data, stream = _load(TCP[0])
    back = encoders.decode(encoders.encode(stream, fmt), fmt)
    assert (
        next(s for s in back.sections if s.name == "slirp").payload
        == _slirp_sections(TCP[0])[0].payload
    )
    assert back.to_bytes() == data
