"""Compiled layouts: the one-struct path gives exactly what the per-field walk gives.

The walker takes the compiled path for visitors that declare the
``takes_runs`` capability; a subclass of the QEMUFile visitors that declines
it takes the per-field path, so the two can be compared on the same bytes:
values, bytes written, and every error (type, message, offset, member path).
"""

from __future__ import annotations

import gc
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import miglab
from miglab.encoders.tree import guarded, plain_state, state_from_plain
from miglab.errors import EncodingError, MiglabError
from miglab.stream.model import Section
from miglab.visitors import (
    ObjectInputVisitor,
    ObjectOutputVisitor,
    QEMUFileInputVisitor,
    QEMUFileOutputVisitor,
    QEMUFileReader,
    QEMUFileWriter,
)
from miglab.vmstate import VMState, VMStateDescription, describe, field, visit_vmstate
from miglab.vmstate.from_vmdesc import description_from_vmdesc
from miglab.vmstate.layout import Run, flat_run, layout, paused_gc, struct_plan
from tests.helpers import DATA


class PerFieldInput(QEMUFileInputVisitor):
    """Same bytes, same errors, but visited field by field (no compiled layout)."""

    takes_runs = False


class PerFieldOutput(QEMUFileOutputVisitor):
    """Writes field by field (no compiled layout)."""

    takes_runs = False


def _read(cls: type[QEMUFileInputVisitor], desc: VMStateDescription, data: bytes) -> object:
    """The state read from ``data`` and where reading stopped, or the error raised."""
    r = QEMUFileReader(data)
    try:
        return visit_vmstate(cls(r), desc, None, desc.version_id), r.pos
    except MiglabError as exc:
        return type(exc), exc.message, exc.offset, exc.path


def _write(cls: type[QEMUFileOutputVisitor], desc: VMStateDescription, state: VMState) -> object:
    w = QEMUFileWriter()
    try:
        visit_vmstate(cls(w), desc, state)
    except MiglabError as exc:
        return type(exc), exc.message, exc.offset, exc.path
    return w.getvalue()


INNER = describe("inner", [field("lo", "uint16"), field("on", "bool")])
DEV = describe(
    "dev",
    [
        field("a", "uint8"),
        field("b", "int32"),
        field("on", "bool"),
        field("x", "float64"),
        field("regs", "uint32", num=3),
        field("pad", "unused_buffer", size=2),
        field("n", "uint8"),
        field("counted", "uint16", num_field="n"),  # breaks the run
        field("t", "timer"),
        field("since2", "uint64", version_id=2),
        field("inner", "struct", struct=INNER),
        field("inners", "struct", struct=INNER, num=2),
        field("last", "int16"),
    ],
    version_id=2,
)
WIRE = bytes.fromhex(
    "07"  # a
    "fffffffe"  # b = -2
    "01"  # on
    "3ff0000000000000"  # x = 1.0
    "000000010000000200000003"  # regs
    "0000"  # pad
    "02"  # n
    "00050006"  # counted
    "ffffffffffffffff"  # t = -1
    "0000000000000009"  # since2
    "000a01"  # inner
    "000b00000c01"  # inners
    "fff0"  # last = -16
)


def test_layout_merges_fixed_fields_and_keeps_the_rest_per_field() -> None:
    steps = layout(DEV, 2)
    kinds = [s.names if isinstance(s, Run) else s.name for s in steps]
    assert kinds == [
        ("a", "b", "on", "x", "regs", "pad", "n"),
        "counted",
        ("t", "since2"),
        "inner",
        "inners",
        ("last",),
    ]
    assert steps[0].struct.format == ">BiBd3I2sB"  # type: ignore[union-attr]
    assert [s.names if isinstance(s, Run) else s.name for s in layout(DEV, 1)][2] == ("t",)
    assert flat_run(INNER, 1) is not None and flat_run(DEV, 2) is None


def test_compiled_read_and_write_equal_the_per_field_walk() -> None:
    fast, pos = _read(QEMUFileInputVisitor, DEV, WIRE)  # type: ignore[misc]
    assert (fast, pos) == _read(PerFieldInput, DEV, WIRE)
    assert pos == len(WIRE)
    assert fast["b"] == -2 and fast["on"] is True and fast["x"] == 1.0
    assert fast["regs"] == [1, 2, 3] and fast["pad"] == b"\0\0" and fast["t"] == -1
    assert fast["inners"][1]["on"] is True
    assert _write(QEMUFileOutputVisitor, DEV, fast) == WIRE == _write(PerFieldOutput, DEV, fast)


@pytest.mark.parametrize("cut", range(0, len(WIRE), 3))
def test_short_input_fails_as_the_per_field_walk_does(cut: int) -> None:
    fast = _read(QEMUFileInputVisitor, DEV, WIRE[:cut])
    assert fast == _read(PerFieldInput, DEV, WIRE[:cut])
    assert fast[0].__name__ == "TruncatedStreamError" and fast[2] is not None  # type: ignore[index]


def test_bad_bool_byte_names_its_member_and_offset() -> None:
    bad = bytearray(WIRE)
    bad[5] = 2  # "on"
    err = _read(QEMUFileInputVisitor, DEV, bytes(bad))
    assert err == _read(PerFieldInput, DEV, bytes(bad))
    assert err[2:] == (5, "on")  # type: ignore[index]
    bad = bytearray(WIRE)
    bad[len(WIRE) - 3] = 7  # inners[1].on, inside a struct read whole
    err = _read(QEMUFileInputVisitor, DEV, bytes(bad))
    assert err == _read(PerFieldInput, DEV, bytes(bad))
    assert err[2:] == (len(WIRE) - 3, "inners[1].on")  # type: ignore[index]


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("a", 256),  # out of range
        ("b", True),  # a bool is not an integer
        ("on", 1),  # an integer is not a bool
        ("pad", b"\0"),  # wrong length
        ("regs", [1, 2]),  # wrong count
        ("x", "1.0"),
        ("last", None),
    ],
)
def test_bad_values_fail_as_the_per_field_walk_does(member: str, value: object) -> None:
    state, _ = _read(QEMUFileInputVisitor, DEV, WIRE)  # type: ignore[misc]
    state.fields[member] = value
    err = _write(QEMUFileOutputVisitor, DEV, state)
    assert err == _write(PerFieldOutput, DEV, state)
    assert isinstance(err, tuple) and err[3] == member


def test_values_of_other_accepted_types_are_written_like_the_per_field_walk() -> None:
    state, _ = _read(QEMUFileInputVisitor, DEV, WIRE)  # type: ignore[misc]
    state.fields["x"] = 1  # an int for a float64
    state.fields["pad"] = bytearray(2)
    assert _write(QEMUFileOutputVisitor, DEV, state) == WIRE == _write(PerFieldOutput, DEV, state)


def test_subsection_header_after_a_flat_struct_is_judged_as_before() -> None:
    parent = describe(
        "p", [field("inner", "struct", struct=INNER), field("tail", "buffer", size=12)]
    )
    data = bytes.fromhex("000101") + b"\x05\x07inner/x" + b"\0\0\0\1"
    fast = _read(QEMUFileInputVisitor, parent, data)
    assert fast == _read(PerFieldInput, parent, data)
    assert fast[0].__name__ == "MigrationFormatError" and "inner/x" in fast[1]  # type: ignore[index]


@st.composite
def flat_descriptions(draw: st.DrawFn) -> VMStateDescription:
    infos = ["uint8", "int16", "uint32", "int64", "bool", "float64", "timer"]
    fields = []
    for i in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from([*infos, "buffer", "array"]))
        if kind == "buffer":
            fields.append(field(f"f{i}", "buffer", size=draw(st.integers(0, 3))))
        elif kind == "array":
            fields.append(
                field(f"f{i}", draw(st.sampled_from(infos[:4])), num=draw(st.integers(0, 3)))
            )
        else:
            fields.append(field(f"f{i}", kind))
    return describe("r", fields)


@settings(max_examples=150, deadline=None)
@given(flat_descriptions(), st.binary(max_size=48))
def test_random_runs_over_random_bytes_equal_the_per_field_walk(
    desc: VMStateDescription, data: bytes
) -> None:
    fast = _read(QEMUFileInputVisitor, desc, data)
    assert fast == _read(PerFieldInput, desc, data)
    if isinstance(fast[0], VMState):
        assert _write(QEMUFileOutputVisitor, desc, fast[0]) == data[: fast[1]]  # type: ignore[misc]


@pytest.mark.parametrize(
    "name", ["q72-pc-i440fx-7.2-net.mig", "q100-pc-q35-10.0-virtio.mig", "q72-pc-q35-7.2-pcie.mig"]
)
def test_real_streams_read_and_write_as_with_the_per_field_walk(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = (DATA / name).read_bytes()
    fast = miglab.load(raw)
    monkeypatch.setattr("miglab.stream.reader.QEMUFileInputVisitor", PerFieldInput)
    monkeypatch.setattr("miglab.stream.writer.QEMUFileOutputVisitor", PerFieldOutput)
    slow = miglab.load(raw)
    states = [r.payload for r in fast.records if isinstance(r, Section)]
    per_field = [r.payload for r in slow.records if isinstance(r, Section)]
    devices = [i for i, p in enumerate(states) if isinstance(p, VMState)]
    assert len(devices) > 10
    assert fast.configuration == slow.configuration
    assert [states[i] for i in devices] == [per_field[i] for i in devices]
    assert slow.to_bytes() == raw


def test_vmdesc_entries_are_remembered_exactly() -> None:
    entry = {
        "vmsd_name": "d",
        "version": 1,
        "fields": [{"name": "a", "type": "uint32", "size": 4}],
    }
    first = description_from_vmdesc(entry)
    assert description_from_vmdesc({**entry}) is first
    bad = {**entry, "version": True}  # equal to 1 in Python, but not an integer in JSON
    with pytest.raises(miglab.errors.DescriptionError):
        description_from_vmdesc(bad)


def test_paused_gc_restores_the_collector_even_on_error() -> None:
    assert gc.isenabled()
    with pytest.raises(ZeroDivisionError), paused_gc():
        assert not gc.isenabled()
        _ = 1 / 0
    assert gc.isenabled()
    gc.disable()
    try:
        with paused_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


PORT = describe("port", [field("up", "uint32"), field("on", "bool")])
HUB = describe("hub", [field("ports", "struct", struct=PORT, num=3), field("tail", "uint8")])


def _hub() -> VMState:
    ports = [VMState(PORT, 1, {"up": i, "on": i % 2 == 1}) for i in range(3)]
    return VMState(HUB, 1, {"ports": ports, "tail": 9})


def test_plain_tree_round_trips_arrays_of_flat_structs() -> None:
    plain = plain_state(_hub(), path="hub")
    assert plain == {
        "ports": [{"up": 0, "on": False}, {"up": 1, "on": True}, {"up": 2, "on": False}],
        "tail": 9,
    }
    assert state_from_plain(HUB, 1, plain, "hub") == _hub()


@pytest.mark.parametrize(
    ("element", "message"),
    [
        ({"up": 0, "on": 1}, "expected a bool, got int"),  # an int where a bool belongs
        ({"up": 0}, "is missing"),
        ({"up": 0, "on": False, "port/sub": {}}, "nobody reads: port/sub"),  # none described
        ([0, False], "expected an object, got list"),
    ],
)
def test_plain_tree_bad_struct_element_says_which(element: object, message: str) -> None:
    plain = plain_state(_hub(), path="hub")
    plain["ports"][1] = element
    with pytest.raises(EncodingError, match=re.escape(message)) as info:
        guarded(state_from_plain, HUB, 1, plain, "hub")
    assert "hub.ports[1]" in str(info.value)


class PerMemberObjectOutput(ObjectOutputVisitor):
    """Builds the same tree member by member (no compiled runs)."""

    takes_runs = False


class PerMemberObjectInput(ObjectInputVisitor):
    """Reads the same tree member by member (no compiled runs)."""

    takes_runs = False


class RunsObjectOutput(ObjectOutputVisitor):
    """Builds the same tree run by run (runs, no whole-struct plans)."""

    takes_plans = False


class RunsObjectInput(ObjectInputVisitor):
    """Reads the same tree run by run (runs, no whole-struct plans)."""

    takes_plans = False


OUTPUTS = (ObjectOutputVisitor, RunsObjectOutput, PerMemberObjectOutput)
INPUTS = (ObjectInputVisitor, RunsObjectInput, PerMemberObjectInput)


@pytest.mark.parametrize(
    "name",
    ["q72-pc-i440fx-7.2-net.mig", "q72-pc-q35-7.2-usb.mig", "q100-pc-i440fx-10.0-default.mig"],
)
def test_object_visitors_plans_and_runs_equal_the_per_member_walk(name: str) -> None:
    """Whole-struct plans, runs and the per-member walk: the same trees (keys in
    the same order) and the same states back, on real streams."""
    s = miglab.load(DATA / name)
    states = [r.payload for r in s.records if isinstance(r, Section)]
    planned = 0
    for state in (p for p in states if isinstance(p, VMState)):
        desc, version = state.desc, state.version_id
        planned += struct_plan(desc, version) is not None
        trees = []
        for cls in OUTPUTS:
            out = cls()
            visit_vmstate(out, desc, state)
            trees.append(out.complete())
        assert trees[0] == trees[1] == trees[2]
        assert repr(trees[0]) == repr(trees[2])  # members in the walk's order
        backs = [visit_vmstate(cls(trees[0]), desc, None, version) for cls in INPUTS]
        assert backs[0] == backs[1] == backs[2] == state
    assert planned > len(states) // 2  # most devices compile whole


SUB = describe("planned/sub", [field("s", "uint32")])
PLANNED = describe(
    "planned",
    [
        field("a", "uint8"),
        field("inner", "struct", struct=INNER),
        field("inners", "struct", struct=INNER, num=2),
        field("regs", "uint32", num=2),
        field("last", "int16"),
    ],
    subsections=[SUB],
)


def _planned() -> VMState:
    inner = [VMState(INNER, 1, {"lo": i, "on": bool(i)}) for i in range(3)]
    fields = {"a": 1, "inner": inner[0], "inners": inner[1:], "regs": [5, 6], "last": -1}
    return VMState(PLANNED, 1, fields, {"planned/sub": VMState(SUB, 1, {"s": 7})})


def _errors(visitors: tuple[type, ...], run: object) -> list[object]:
    out = []
    for cls in visitors:
        try:
            got = run(cls)  # type: ignore[operator]
        except MiglabError as exc:
            got = (type(exc), exc.message, exc.path)
        out.append(got)
    return out


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("a",), 256),
        (("a",), True),
        (("regs",), [1, True]),
        (("regs",), [1]),
        (("inner", "lo"), 1 << 16),
        (("inner", "on"), 1),
        (("inner", "more"), 0),
        (("inners",), [{"lo": 1, "on": True}]),
        (("inners",), [{"lo": 1, "on": True}, {"lo": 1}]),
        (("inners",), [{"lo": 1, "on": True}, [1, True]]),
        (("planned/sub",), {"s": 1, "t": 2}),
        (("planned/sub",), None),
        (("planned/sub", "s"), -1),
        (("extra",), 0),
    ],
)
def test_planned_struct_fails_as_the_per_member_walk_does(where: tuple, value: object) -> None:
    """A struct that compiles whole (nested structs, arrays of structs, a
    subsection): a bad tree fails with the per-member walk's error."""
    assert struct_plan(PLANNED, 1) is not None
    out = ObjectOutputVisitor()
    visit_vmstate(out, PLANNED, _planned())
    tree = out.complete()
    assert visit_vmstate(ObjectInputVisitor(tree), PLANNED, None, 1) == _planned()
    node = tree
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    errors = _errors(INPUTS, lambda cls: visit_vmstate(cls(tree), PLANNED, None, 1))
    assert errors[0] == errors[1] == errors[2]
    assert type(errors[0]) is tuple and errors[0][2] is not None  # an error naming the member


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("a", 256),
        ("regs", [1, 1 << 32]),
        ("inner", {"lo": 1, "on": True}),  # not a state
        ("inner", VMState(INNER, 1, {"lo": 1 << 16, "on": True})),
        ("inner", VMState(INNER, 2, {"lo": 1, "on": True})),  # another version: walked
        ("inners", [VMState(INNER, 1, {"lo": 1, "on": 2})] * 2),
        ("inners", [VMState(INNER, 1, {"lo": 1, "on": True})]),
        ("last", 1.5),
    ],
)
def test_planned_state_writes_as_the_per_member_walk_does(member: str, value: object) -> None:
    def write(cls: type) -> object:
        state = _planned()
        state.fields[member] = value
        out = cls()
        visit_vmstate(out, PLANNED, state)
        return out.complete()

    errors = _errors(OUTPUTS, write)
    assert errors[0] == errors[1] == errors[2]


@pytest.mark.parametrize(
    ("member", "value"),
    [
        ("b", 1 << 31),
        ("a", -1),
        ("on", 2),
        ("regs", [1, 2, True]),
        ("regs", [1, 2]),
        ("pad", b"\0"),
        ("t", "x"),
        ("inners", [{"lo": 1, "on": True}, {"lo": 1 << 16, "on": True}]),
        ("inners", [{"lo": 1, "on": True}, {"lo": 1, "on": True, "more": 0}]),
        ("inner", {"lo": 1}),
    ],
)
def test_bad_tree_values_fail_as_the_per_member_walk_does(member: str, value: object) -> None:
    good = _read(QEMUFileInputVisitor, DEV, WIRE)[0]  # type: ignore[index]
    out = ObjectOutputVisitor()
    visit_vmstate(out, DEV, good)
    tree = out.complete()
    tree[member] = value
    errors = []
    for cls in (ObjectInputVisitor, PerMemberObjectInput):
        with pytest.raises(MiglabError) as info:
            visit_vmstate(cls(tree), DEV, None, DEV.version_id)
        errors.append((type(info.value), info.value.message, info.value.path))
    assert errors[0] == errors[1]
    assert errors[0][2] is not None and member in errors[0][2]
