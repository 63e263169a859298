"""Decoding device sections with a ``-dump-vmstate`` schema (miglab.vmstate.from_schema)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import miglab
from miglab.errors import DescriptionError, LimitExceeded
from miglab.limits import LIMITS
from miglab.stream.model import Opaque, Section, SectionKind, Stream
from miglab.vmstate import VMState, iter_leaves
from miglab.vmstate.from_schema import SchemaIndex
from tests.helpers import DATA

OLD = DATA / "q72-pc-i440fx-2.2-default.mig"  # no vmdesc, no footers
OLD_SCHEMA = DATA / "schema-7.2-pc-i440fx-2.2.json"  # no "num" (QEMU 7.2)
HINTS = DATA / "schema-10.0-pc-i440fx-10.0.json"  # has "num" (QEMU >= 8.1)
REFERENCE = DATA / "q72-pc-i440fx-2.4-default.mig"  # same devices, with a vmdesc

_SUFFIX = re.compile(r"(\[\d+\]|#\d+)(?=\.|$)")


def leaves(state: VMState, *, values: bool = True) -> list[tuple[Any, ...]]:
    """Wire-order leaves as (path, size[, value]), one per array element.

    Paths drop the ``[n]``/``#n`` suffixes that tell duplicate names apart
    (vmdesc and schema number them differently); a schema has no type
    names, so integers compare as unsigned and bools as integers.
    """
    out: list[tuple[Any, ...]] = []
    for path, f, value in iter_leaves(state):
        path = _SUFFIX.sub("", path)
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, int):
                v = int(v) % (1 << (8 * f.size))
            out.append((path, f.size, v) if values else (path, f.size))
    return out


def devices(stream: Stream) -> dict[tuple[str, int], Any]:
    return {
        (r.name, r.instance_id): r.payload
        for r in stream.records
        if isinstance(r, Section) and r.kind is SectionKind.FULL
    }


def decoded(stream: Stream) -> list[str]:
    return [f"{n}#{i}" for (n, i), p in devices(stream).items() if isinstance(p, VMState)]


@pytest.fixture(scope="module")
def old_schema() -> SchemaIndex:
    return SchemaIndex.load(OLD_SCHEMA)


@pytest.fixture(scope="module")
def hinted_schema() -> SchemaIndex:
    return SchemaIndex.load(OLD_SCHEMA, hints=HINTS)


@pytest.fixture(scope="module")
def reference() -> dict[tuple[str, int], Any]:
    return devices(miglab.load(REFERENCE))


def test_old_stream_decodes_unambiguous_devices(old_schema, reference):
    stream = miglab.load(OLD, schema=old_schema)
    assert decoded(stream) == [
        "0000:00:00.0/I440FX#0",
        "i8259#0",
        "i8259#1",
        "hpet#0",  # timer[] is a VARRAY of the num_timers value before it
        "mc146818rtc#0",
        "ps2kbd#0",
        "ps2mouse#0",
        "pckbd#0",
        "vmmouse#0",  # queue[] length vouched for by queue_size
        "port92#0",
    ]
    for key, payload in devices(stream).items():
        if isinstance(payload, VMState):
            assert leaves(payload, values=False) == leaves(reference[key], values=False), key
    assert stream.to_bytes() == OLD.read_bytes()


def test_old_stream_with_array_hints_from_a_newer_schema(hinted_schema, reference):
    stream = miglab.load(OLD, schema=hinted_schema)
    assert decoded(stream) == [
        "kvm-tpr-opt#0",
        "0000:00:00.0/I440FX#0",
        "dma#0",
        "dma#1",
        "0000:00:01.0/PIIX3#0",
        "i8259#0",
        "i8259#1",
        "ioapic#0",
        "hpet#0",
        "mc146818rtc#0",
        "i8254#0",
        "ps2kbd#0",
        "ps2mouse#0",
        "pckbd#0",
        "vmmouse#0",
        "port92#0",
    ]
    for key, payload in devices(stream).items():
        if isinstance(payload, VMState):
            assert leaves(payload, values=False) == leaves(reference[key], values=False), key
        else:
            assert isinstance(payload, Opaque)
    assert stream.to_bytes() == OLD.read_bytes()


def test_ambiguous_arrays_stay_opaque(old_schema):
    # ioapic: id, ioregsel, unused, irr, ioredtbl[24]; with no "num" any of them
    # could absorb the 184 spare bytes, so nothing is guessed.
    stream = miglab.load(OLD, schema=old_schema)
    payload = devices(stream)[("ioapic", 0)]
    assert isinstance(payload, Opaque)


def strip_vmdesc(path: Path) -> tuple[bytes, Stream]:
    with_vmdesc = miglab.load(path)
    raw = path.read_bytes()
    cut = with_vmdesc.to_bytes()
    with_vmdesc.vmdesc = None
    stripped = with_vmdesc.to_bytes()
    assert stripped == raw[: len(stripped)] and stripped[-1] == 0  # up to and including EOF
    assert cut == raw
    return stripped, miglab.load(path)


@pytest.mark.parametrize(
    ("name", "schema", "at_least"),
    [
        ("q72-pc-q35-7.2-usb.mig", "schema-7.2-pc-q35-7.2.json", 13),
        ("q72-pc-i440fx-7.2-net.mig", "schema-7.2-pc-i440fx-7.2.json", 12),
        ("q100-pc-q35-10.0-virtio.mig", "schema-10.0-pc-q35-10.0.json", 17),
        ("q100-pc-i440fx-10.0-usb.mig", "schema-10.0-pc-i440fx-10.0.json", 23),
    ],
)
def test_schema_decode_equals_vmdesc_decode(name, schema, at_least):
    stripped, reference = strip_vmdesc(DATA / name)
    stream = miglab.load(stripped, schema=DATA / schema)
    assert stream.vmdesc is None
    assert stream.to_bytes() == stripped
    ref = devices(reference)
    got = devices(stream)
    assert got.keys() == ref.keys()
    n = 0
    for key, payload in got.items():
        if isinstance(payload, VMState):
            n += 1
            assert leaves(payload) == leaves(ref[key]), key
    assert n >= at_least, f"{n}/{len(got)} device sections decoded"


def test_edited_schema_decoded_stream_stays_valid(old_schema):
    stream = miglab.load(OLD, schema=old_schema)
    rtc = devices(stream)[("mc146818rtc", 0)]
    rtc["cmos_index"] = (rtc["cmos_index"] + 1) % 256
    again = miglab.load(stream.to_bytes(), schema=old_schema)
    assert devices(again)[("mc146818rtc", 0)]["cmos_index"] == rtc["cmos_index"]


def test_unknown_sections_stay_opaque(old_schema):
    payloads = devices(miglab.load(OLD, schema=old_schema))
    for key in [("timer", 0), ("cpu", 0), ("globalstate", 0)]:
        assert isinstance(payloads[key], Opaque)


def test_lookup_by_vmsd_and_class_name(old_schema):
    assert old_schema.lookup("0000:00:01.0/PIIX3")[0].name == "PIIX3"
    assert old_schema.lookup("mc146818rtc")[0].name == "mc146818rtc"
    assert old_schema.lookup("isa-fdc")[0].name == "fdc"  # a class name
    assert old_schema.lookup("timer") == []
    assert old_schema.machine == "pc-i440fx-2.2"


# --- hostile schemas ----------------------------------------------------------------


@pytest.mark.parametrize(
    "schema",
    [
        [],
        {"x": 1},
        {"x": {"Description": []}},
        {"x": {"Description": {"name": 3}}},
        {"x": {"Description": {"name": "x", "version_id": -1}}},
        {"x": {"Description": {"name": "x", "version_id": 1, "Fields": {}}}},
        {"x": {"Description": {"name": "x", "version_id": 1, "Fields": [{"field": 1}]}}},
        {
            "x": {
                "Description": {
                    "name": "x",
                    "version_id": 1,
                    "Fields": [{"field": "a", "size": "4"}],
                }
            }
        },
        {
            "x": {
                "Description": {
                    "name": "x",
                    "version_id": 1,
                    "Fields": [{"field": "a", "field_exists": 1}],
                }
            }
        },
    ],
)
def test_bad_schema_shapes(schema):
    with pytest.raises(DescriptionError):
        SchemaIndex.load(schema)


def test_bad_schema_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"{not json")
    with pytest.raises(DescriptionError):
        SchemaIndex.load(bad)
    with pytest.raises(DescriptionError):
        SchemaIndex.load(tmp_path / "missing.json")
    with pytest.raises(DescriptionError):
        SchemaIndex.load(12)  # type: ignore[arg-type]
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100000 + "]" * 100000)
    with pytest.raises((LimitExceeded, DescriptionError)):
        SchemaIndex.load(deep)


def test_schema_limits(tmp_path, monkeypatch):
    nested: dict[str, Any] = {"name": "leaf", "version_id": 1, "Fields": []}
    for _ in range(LIMITS.max_depth + 2):
        nested = {
            "name": "n",
            "version_id": 1,
            "Fields": [{"field": "s", "version_id": 0, "size": 1, "Description": nested}],
        }
    with pytest.raises(LimitExceeded):
        SchemaIndex.load({"x": {"Description": nested}})
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"vmschkmachine": {"Name": "m"}}) + " " * 2048)
    monkeypatch.setattr(LIMITS, "max_schema_bytes", 1024)
    with pytest.raises(LimitExceeded):
        SchemaIndex.load(big)


def test_many_predicates_are_bounded():
    # 40 predicated fields would be 2**40 layouts; the search stops at the budget.
    fields = [
        {"field": f"f{i}", "version_id": 0, "field_exists": True, "size": 1} for i in range(40)
    ]
    idx = SchemaIndex.load({"d": {"Description": {"name": "d", "version_id": 1, "Fields": fields}}})
    from miglab.visitors.qemufile import QEMUFileReader

    r = QEMUFileReader(bytes(100))
    calls = []

    def never(reader: QEMUFileReader) -> bool:
        calls.append(reader.pos)
        return False

    assert idx.decode(r, "d", 1, never) is None
    assert r.pos == 0
    assert len(calls) < 64 * 100
