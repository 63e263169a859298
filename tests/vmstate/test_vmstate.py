"""VMState descriptions: every feature both ways, random descriptions, needed and checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miglab.devices.pci import VMSTATE_PCI_DEVICE, PCIDevice
from miglab.devices.state import check_state, state_from_values
from miglab.errors import TruncatedStreamError, VisitorError
from miglab.visitors import (
    ObjectInputVisitor,
    ObjectOutputVisitor,
    QEMUFileInputVisitor,
    QEMUFileOutputVisitor,
    QEMUFileReader,
    QEMUFileWriter,
)
from miglab.vmstate import VMState, VMStateDescription, describe, field, visit_vmstate

INNER = describe("inner", [field("a", "uint16"), field("b", "bool")])
DEV = describe(
    "dev",
    [
        field("n", "uint8"),
        field("old", "uint32", version_id=0),
        field("new", "uint32", version_id=3),  # only in version >= 3 streams
        field("opt", "int16", exists=lambda vals, ver: vals["n"] > 1),  # field_exists
        field("fixed", "uint16", num=3),
        field("counted", "int32", num_field="n"),  # VMSTATE_VARRAY
        field("inner", "struct", struct=INNER),
        field("inners", "struct", struct=INNER, num_field="n"),
        field("unused", "unused_buffer", size=4),
        field("timer", "timer"),
        field("magic", "uint32 equal"),
        field("ver", "int32 le"),
    ],
    version_id=3,
    subsections=[
        describe("dev/extra", [field("x", "uint64")], needed=lambda v: v["x"] != 0),
    ],
)
VALUES = {
    "n": 2,
    "old": 7,
    "new": 8,
    "opt": -5,
    "fixed": [1, 2, 3],
    "counted": [-1, 1],
    "inner": {"a": 9, "b": True},
    "inners": [{"a": 1, "b": False}, {"a": 2, "b": True}],
    "unused": b"\0\0\0\0",
    "timer": -1,
    "magic": 0xCAFE,
    "ver": 2,
    "x": 5,
}
WIRE_V3 = bytes.fromhex(
    "02"  # n
    "00000007"  # old
    "00000008"  # new (version 3)
    "fffb"  # opt (n > 1)
    "000100020003"  # fixed
    "ffffffff00000001"  # counted by n
    "000901"  # inner
    "00010000 0201"  # inners[2]
    "00000000"  # unused
    "ffffffffffffffff"  # timer not armed
    "0000cafe"  # magic
    "00000002"  # ver
    "05 09" + b"dev/extra".hex() + "00000001 0000000000000005"  # subsection
)


def _write(desc: VMStateDescription, state: VMState, version: int | None = None) -> bytes:
    w = QEMUFileWriter()
    visit_vmstate(QEMUFileOutputVisitor(w), desc, state, version)
    return w.getvalue()


def _read(desc: VMStateDescription, data: bytes, version: int) -> VMState:
    r = QEMUFileReader(data)
    state = visit_vmstate(QEMUFileInputVisitor(r), desc, None, version)
    assert r.pos == len(data)
    return state


def _plain(state: VMState) -> dict:
    out = {}
    for k, v in state.fields.items():
        if isinstance(v, VMState):
            v = _plain(v)
        elif isinstance(v, list):
            v = [_plain(x) if isinstance(x, VMState) else x for x in v]
        out[k] = v
    return out | {k: _plain(s) for k, s in state.subsections.items()}


def test_hand_built_description_writes_known_bytes_and_reads_them_back() -> None:
    state = state_from_values(DEV, VALUES)
    assert list(state.subsections) == ["dev/extra"]
    assert _write(DEV, state) == WIRE_V3
    back = _read(DEV, WIRE_V3, 3)
    assert _plain(back) == _plain(state)
    v = ObjectOutputVisitor()
    visit_vmstate(v, DEV, state)
    tree = v.complete()
    assert tree["inners"][1] == {"a": 2, "b": True} and tree["dev/extra"] == {"x": 5}
    assert _plain(visit_vmstate(ObjectInputVisitor(tree), DEV)) == _plain(state)


def test_version_exists_and_needed_leave_fields_out() -> None:
    values = VALUES | {"n": 1, "counted": [4], "inners": [{"a": 1, "b": False}], "x": 0}
    state = state_from_values(DEV, values, version_id=2)
    assert "new" not in state.fields and "opt" not in state.fields and not state.subsections
    wire = _write(DEV, state)
    assert wire[:5] == bytes.fromhex("0100000007") and wire[5:11] == bytes.fromhex("000100020003")
    assert _plain(_read(DEV, wire, 2)) == _plain(state)


def test_missing_member_and_bad_count_are_named() -> None:
    with pytest.raises(VisitorError) as err:
        state_from_values(DEV, {k: v for k, v in VALUES.items() if k != "magic"})
    assert err.value.path == "magic"
    state = state_from_values(DEV, VALUES)
    state.fields["counted"] = [1, 2, 3]
    with pytest.raises(VisitorError) as err:
        _write(DEV, state)
    assert err.value.path == "counted"
    state = state_from_values(DEV, VALUES)
    state.fields["inners"][1].fields["a"] = 1 << 16
    with pytest.raises(VisitorError) as err:
        _write(DEV, state)
    assert err.value.path == "inners[1].a"


def test_truncated_description_input_names_member_and_offset() -> None:
    cases = [
        (0, "n", 0),
        (3, "old", 1),
        (14, "fixed", 11),
        (20, "counted", 17),
        (30, "inners[0].b", 30),
    ]
    for cut, path, offset in cases:
        with pytest.raises(TruncatedStreamError) as err:
            visit_vmstate(QEMUFileInputVisitor(QEMUFileReader(WIRE_V3[:cut])), DEV, None, 3)
        assert (err.value.path, err.value.offset) == (path, offset)


def test_equal_and_le_checks_against_the_destination() -> None:
    state = _read(DEV, WIRE_V3, 3)
    check_state(state, VALUES)  # magic equal, ver 2 <= 2
    with pytest.raises(VisitorError) as err:
        check_state(state, VALUES | {"magic": 0xBEEF})
    assert err.value.path == "magic" and "48879" in err.value.message
    with pytest.raises(VisitorError) as err:
        check_state(state, VALUES | {"ver": 1})
    assert err.value.path == "ver"
    # A PCI header from a newer QEMU (version_id 3) is refused by a version-2 destination.
    pci = state_from_values(VMSTATE_PCI_DEVICE, PCIDevice(version_id=3))
    with pytest.raises(VisitorError) as err:
        check_state(pci, PCIDevice())
    assert err.value.path == "version_id"
    check_state(state_from_values(VMSTATE_PCI_DEVICE, PCIDevice(version_id=1)), PCIDevice())


# --- random descriptions and states ------------------------------------------
SCALARS = [
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "int8",
    "int16",
    "int32",
    "int64",
    "bool",
    "timer",
]
_names = iter(range(10**9))


def _scalar_value(f) -> st.SearchStrategy:
    if f.kind == "bool":
        return st.booleans()
    if f.kind == "bytes":
        return st.binary(min_size=f.size, max_size=f.size)
    bits = f.size * 8
    if f.signed:
        return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return st.integers(0, (1 << bits) - 1)


@st.composite
def descriptions(draw, depth: int = 0, prefix: str = "d") -> VMStateDescription:
    fields = []
    counts: list[str] = []
    for i in range(draw(st.integers(0 if depth else 1, 5))):
        name = f"f{i}"
        kind = draw(st.sampled_from(["scalar", "buffer", "array", "varray", "struct", "count"]))
        if kind == "struct" and depth < 2:
            sub = draw(descriptions(depth + 1, f"{prefix}{i}"))
            fields.append(field(name, "struct", struct=sub, num=draw(st.sampled_from([None, 2]))))
        elif kind == "buffer":
            fields.append(field(name, "buffer", size=draw(st.integers(0, 8))))
        elif kind == "array":
            fields.append(field(name, draw(st.sampled_from(SCALARS)), num=draw(st.integers(0, 4))))
        elif kind == "varray" and counts:
            fields.append(field(name, draw(st.sampled_from(SCALARS)), num_field=counts[-1]))
        elif kind == "count":
            fields.append(field(name, "uint8"))
            counts.append(name)
        else:
            fields.append(field(name, draw(st.sampled_from(SCALARS))))
    subs = []
    if depth == 0 and draw(st.booleans()):
        subs.append(describe(f"{prefix}/sub", [field("s", "uint32")]))
    return describe(prefix, fields, version_id=1, subsections=subs)


@st.composite
def states(draw, desc: VMStateDescription) -> VMState:
    values: dict = {}
    for f in desc.fields:
        if f.kind == "struct":
            n = f.num
            values[f.name] = (
                draw(states(f.struct)) if n is None else [draw(states(f.struct)) for _ in range(n)]
            )
        elif f.num_field is not None:
            values[f.name] = [draw(_scalar_value(f)) for _ in range(values[f.num_field])]
        elif f.num is not None:
            values[f.name] = [draw(_scalar_value(f)) for _ in range(f.num)]
        elif f.name in {g.num_field for g in desc.fields}:
            values[f.name] = draw(st.integers(0, 3))
        else:
            values[f.name] = draw(_scalar_value(f))
    subs = {}
    for sd in desc.subsections:
        if draw(st.booleans()):
            subs[sd.name] = VMState(sd, 1, {"s": draw(st.integers(0, 2**32 - 1))})
    return VMState(desc, desc.version_id, values, subs)


@st.composite
def described_states(draw) -> VMState:
    return draw(states(draw(descriptions())))


@settings(max_examples=150, deadline=None)
@given(described_states())
def test_random_descriptions_round_trip_through_both_visitor_pairs(state: VMState) -> None:
    desc = state.desc
    wire = _write(desc, state)
    assert _plain(_read(desc, wire, 1)) == _plain(state)
    v = ObjectOutputVisitor()
    visit_vmstate(v, desc, state)
    assert _plain(visit_vmstate(ObjectInputVisitor(v.complete()), desc)) == _plain(state)


@settings(max_examples=60, deadline=None)
@given(described_states())
def test_random_states_truncated_anywhere_raise(state: VMState) -> None:
    desc = state.desc
    wire = _write(desc, state)
    body = len(wire) - (14 + len(desc.name) if state.subsections else 0)
    for cut in range(body):
        r = QEMUFileReader(wire, end=cut)
        with pytest.raises(TruncatedStreamError) as err:
            visit_vmstate(QEMUFileInputVisitor(r), desc, None, 1)
        assert err.value.offset is not None and err.value.offset <= cut
        assert err.value.path
