"""miglab.encoders: every format round-trips every real stream byte for byte."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cbor2
import msgpack
import pytest

import miglab
from miglab import encoders
from miglab.encoders import asn1
from miglab.encoders.bench import device_state
from miglab.encoders.tree import from_plain, to_plain
from miglab.errors import EncodingError
from miglab.stream.model import Section
from miglab.stream.ram import RamPayload
from tests.helpers import STREAMS, stream_ids

# asn1tools is pure Python: the ASN.1 formats run on one stream per QEMU
# version and machine family plus the odd ones (no vmdesc, pc-2.x); the
# other formats on every stream.
CHEAP = ("legacy", "sized", "json", "cbor", "msgpack")
ASN1 = ("asn1-ber", "asn1-per")
ASN1_STREAMS = [
    p
    for p in STREAMS
    if p.stem
    in (
        "q72-pc-i440fx-7.2-net",
        "q100-pc-q35-10.0-usb",
        "q72-pc-i440fx-2.2-default",
        "q100-pc-i440fx-2.4-default",
    )
]


def decode(fmt: str, data: bytes, stream: miglab.Stream) -> miglab.Stream:
    """Decode ``data``; asn1-per is given the module of ``stream`` (which it checks)."""
    kwargs = {"schema": asn1.schema_text(stream)} if fmt == "asn1-per" else {}
    return encoders.decode(data, fmt, **kwargs)


def roundtrip(path: Path, formats: tuple[str, ...]) -> dict[str, bytes]:
    """legacy -> format -> legacy is the input, and detect() names the format."""
    raw = path.read_bytes()
    stream = miglab.load(raw)
    out = {}
    for fmt in formats:
        data = out[fmt] = encoders.encode(stream, fmt)
        assert encoders.detect(data) == fmt
        assert decode(fmt, data, stream).to_bytes() == raw, fmt
    return out


def test_names() -> None:
    assert encoders.names() == (
        "legacy",
        "sized",
        "json",
        "cbor",
        "msgpack",
        "asn1-ber",
        "asn1-per",
    )
    with pytest.raises(EncodingError, match="unknown format"):
        encoders.get("xml")


@pytest.mark.parametrize("path", STREAMS, ids=stream_ids(STREAMS))
def test_roundtrip_cheap_formats(path: Path) -> None:
    roundtrip(path, CHEAP)


@pytest.mark.parametrize("path", ASN1_STREAMS, ids=stream_ids(ASN1_STREAMS))
def test_roundtrip_asn1(path: Path) -> None:
    """...and both ASN.1 encodings are smaller than QEMU's stream, also the streams
    with little device state (the pc-2.x ones; q72-pc-i440fx-2.2 has no vmdesc)."""
    encoded = roundtrip(path, ASN1)
    size = path.stat().st_size
    assert len(encoded["asn1-per"]) < 0.95 * size
    assert len(encoded["asn1-ber"]) < size


@pytest.fixture(scope="module")
def net() -> miglab.Stream:
    return miglab.load(next(p for p in STREAMS if p.stem == "q72-pc-i440fx-7.2-net"))


def test_pages_are_binary_in_binary_formats(net: miglab.Stream) -> None:
    """A page's bytes appear verbatim in every binary encoding (no hex, no base64)."""
    ram = next(
        s.payload
        for s in net.sections
        if isinstance(s.payload, RamPayload) and len(s.payload) > 100
    )
    page = next(bytes(p) for _, _, fl, p in ram.pages() if len(p) == net.page_size and any(p))
    for fmt in ("sized", "cbor", "msgpack", "asn1-ber", "asn1-per"):
        data = encoders.encode(net, fmt)
        assert page in data, fmt
        assert page.hex().encode() not in data, fmt


def test_descriptions_are_stored_once(net: miglab.Stream) -> None:
    """Equal descriptions (one per cpu, per identical device) share one table entry."""
    tree = to_plain(net)
    descs = [s.payload.desc for s in net.sections if isinstance(s.payload, miglab.VMState)]
    assert len(tree["descs"]) < sum(1 for _ in descs) + sum(len(d.fields) for d in descs)
    keys = [repr(d) for d in tree["descs"]]
    assert len(keys) == len(set(keys))


def test_tree_without_vmdesc_keeps_decoded_state(net: miglab.Stream) -> None:
    """Descriptions travel in the tree itself: a stream with its vmdesc dropped still
    decodes to the same device states (legacy would keep them opaque)."""
    bare = dataclasses.replace(net, vmdesc=None)
    want = bare.to_bytes()
    for fmt in ("json", "cbor", "msgpack", "asn1-ber"):
        back = decode(fmt, encoders.encode(bare, fmt), bare)
        assert back.vmdesc is None
        assert back.to_bytes() == want
        e1000 = back.device("e1000")
        assert isinstance(e1000.payload, miglab.VMState)
        assert e1000.payload.fields == net.device("e1000").payload.fields
    assert not isinstance(miglab.load(want).device("e1000").payload, miglab.VMState)


def test_edited_value_survives_every_format(net: miglab.Stream) -> None:
    tree = miglab.load(net.to_bytes())
    e1000 = tree.device("e1000").payload
    e1000.fields["mac_reg[1]"][5] = 0xDEADBEEF
    e1000.fields["rxbuf_size"] = 4096
    want = tree.to_bytes()
    for fmt in encoders.names():
        back = decode(fmt, encoders.encode(tree, fmt), tree)
        assert back.device("e1000").payload.fields["mac_reg[1]"][5] == 0xDEADBEEF
        assert back.device("e1000").payload.fields["rxbuf_size"] == 4096
        assert back.to_bytes() == want


def test_value_that_does_not_fit_is_an_encoding_error(net: miglab.Stream) -> None:
    tree = miglab.load(net.to_bytes())
    tree.device("e1000").payload.fields["mac_reg[1]"][0] = 1 << 40
    with pytest.raises(EncodingError, match=r"mac_reg\[1\]"):
        to_plain(tree)


def test_cbor_is_dag_cbor_and_any_cbor_reads(net: miglab.Stream) -> None:
    """miglab writes the deterministic subset (DAG-CBOR: keys length-first), and
    reads CBOR in another writer's key order through cbor2 all the same."""
    import cbrrr

    data = encoders.encode(net, "cbor")
    plain = cbrrr.decode_dag_cbor(data[3:])  # refuses anything but canonical DAG-CBOR
    keys = list(plain)
    assert keys == sorted(keys, key=lambda k: (len(k.encode()), k.encode()))
    shuffled = b"\xd9\xd9\xf7" + cbor2.dumps(dict(reversed(plain.items())))
    with pytest.raises(ValueError, match="canonical"):
        cbrrr.decode_dag_cbor(shuffled[3:])
    assert encoders.decode(shuffled, "cbor").to_bytes() == net.to_bytes()


def test_self_describing_formats_decode_alone(net: miglab.Stream) -> None:
    for fmt in ("json", "cbor", "msgpack", "asn1-ber", "asn1-per"):
        assert encoders.get(fmt).self_describing
        assert encoders.decode(encoders.encode(net, fmt)).to_bytes() == net.to_bytes()


def test_sized_lengths_let_a_reader_skip(net: miglab.Stream) -> None:
    """Each section payload is preceded by its length: skipping by lengths alone walks
    the whole record list without decoding anything."""
    data = encoders.encode(net, "sized")
    first = next(s for s in net.sections if s.kind.value == "full")
    name = first.name.encode()
    at = data.index(bytes([len(name)]) + name) + 1 + len(name) + 8
    length = int.from_bytes(data[at : at + 4], "big")
    payload_at = at + 4
    assert data[payload_at + length] == 0x7E  # the footer right after the payload
    assert (
        int.from_bytes(data[payload_at + length + 1 : payload_at + length + 5], "big")
        == first.section_id
    )


def test_plain_tree_is_plain(net: miglab.Stream) -> None:
    def walk(v: object) -> None:
        if isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, dict):  # a device state: members by name
            for k, x in v.items():
                assert type(k) is str, k
                walk(x)
        else:
            assert v is None or type(v) in (bool, int, str, bytes), type(v)

    tree = to_plain(net)
    for value in tree.values():
        walk(value)
    assert from_plain(tree).to_bytes() == net.to_bytes()


def test_device_state_is_device_sections_only(net: miglab.Stream) -> None:
    dev = device_state(net)
    assert all(
        isinstance(s, Section) and isinstance(s.payload, miglab.VMState) for s in dev.records
    )
    assert miglab.load(dev.to_bytes()).to_bytes() == dev.to_bytes()


def _e1000_state(tree: dict) -> dict:
    """The e1000's device state in a plain tree, found by its description's name alone."""
    (rec,) = [
        r
        for r in tree["records"]
        if r[0] == "S" and r[7][0] == "D" and tree["descs"][r[7][1]][0] == "e1000"
    ]
    return rec[7][3]


@pytest.mark.parametrize(
    ("fmt", "load"),
    [
        ("json", lambda data: json.loads(data)),
        ("cbor", lambda data: cbor2.loads(data)),  # the 55799 tag is dropped by cbor2
        ("msgpack", lambda data: msgpack.unpackb(data, raw=False)),
    ],
)
def test_self_describing_formats_name_the_e1000_registers(net: miglab.Stream, fmt, load) -> None:
    """Opened with the plain library, no miglab: the e1000's MAC registers by name.

    The NIC was started with ``mac=52:54:00:12:34:01`` (data/README.md); the
    receive-address registers RAL0/RAH0 (``mac_reg[0]``, the RA sub-array)
    hold it little-endian, RAH0 with the address-valid bit 31.
    """
    state = _e1000_state(load(encoders.encode(net, fmt)))
    ral, rah = state["mac_reg[0]"][:2]
    mac = ral.to_bytes(4, "little") + (rah & 0xFFFF).to_bytes(2, "little")
    assert mac.hex(":") == "52:54:00:12:34:01"
    assert rah >> 31 == 1
    assert "mac_reg[STATUS]" in state and "mac_reg[CTRL]" in state
    assert set(state["parent_obj"]) == {"version_id", "config[0]", "irq_state"}


def test_object_input_is_strict_about_unknown_members(net: miglab.Stream) -> None:
    """A member nobody reads is an error naming it (QEMU's visit_check_struct)."""
    tree = to_plain(net)
    _e1000_state(tree)["mac_reg[TYPO]"] = 1
    with pytest.raises(EncodingError, match=r"nobody reads: mac_reg\[TYPO\]") as info:
        from_plain(tree)
    assert info.value.path == "0000:00:02.0/e1000"
    tree = to_plain(net)
    _e1000_state(tree)["parent_obj"]["extra"] = 0
    with pytest.raises(EncodingError, match="nobody reads: extra") as info:
        from_plain(tree)
    assert info.value.path == "0000:00:02.0/e1000.parent_obj"


def test_tree_vmdesc_is_parsed_when_first_read(net: miglab.Stream) -> None:
    """A decoded tree's vmdesc stays text until read; re-encoding carries that text as it
    is; reading it gives the loaded vmdesc, and a vmdesc that is not JSON fails decode."""
    dev = device_state(net)
    want = dev.to_bytes()
    for fmt in ("json", "cbor", "msgpack"):
        data = encoders.encode(dev, fmt)
        back = encoders.decode(data, fmt)
        assert back.deferred_vmdesc() is not None
        assert encoders.encode(back, fmt) == data
        assert back.deferred_vmdesc() is not None  # encoding did not parse it
        assert back.vmdesc == net.vmdesc
        assert back.deferred_vmdesc() is None
        assert back.to_bytes() == want
    tree = to_plain(dev)
    for text in ('{"devices": [', "[1, 2]", '"devices"'):
        with pytest.raises(EncodingError, match="vmdesc"):
            from_plain({**tree, "vmdesc": text})


def test_json_bytes_are_found_in_long_lists() -> None:
    """A long list of numbers is passed over whole; one with anything else, item by item."""
    from miglab.encoders.json_format import _loads

    numbers = list(range(40))
    text = json.dumps([numbers, [*numbers, 0.5, True], [*numbers, {"$b": "AQI="}], ["x"] * 20])
    assert _loads(text.encode()) == [
        numbers,
        [*numbers, 0.5, True],
        [*numbers, b"\x01\x02"],
        ["x"] * 20,
    ]
