"""miglab.compat.edit: a registered step copies on write, so its input stays as it was.

A step (:class:`~miglab.compat.registry.Transform`) and the schema-driven step no longer
deep-copy the device tree; they copy only what they change.  These tests hold them to what
the deep copy gave for free: the caller's states are never changed, also by a step that
fails half-way, while what the steps did not change is shared, not copied.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest

import miglab
from miglab.compat import Edit, Registry, convert_stream
from miglab.compat.schema_driven import SchemaDriven
from miglab.errors import CompatError
from miglab.stream.model import Section
from miglab.vmstate.description import describe, field
from miglab.vmstate.state import VMState
from tests.helpers import DATA

NET = DATA / "q100-pc-q35-10.0-net.mig"
SCHEMAS = (DATA / "schema-10.0-pc-q35-10.0.json", DATA / "schema-7.2-pc-q35-7.2.json")


def _devices(stream: miglab.Stream) -> list[Section]:
    return [s for s in stream.sections if isinstance(s.payload, VMState)]


def test_a_conversion_leaves_the_source_as_it_was_and_shares_what_it_did_not_change() -> None:
    stream = miglab.load(NET)
    before = {id(s): copy.deepcopy(s.payload) for s in _devices(stream)}
    out, report = convert_stream(
        stream, to_qemu="7.2", machine="pc-q35-7.2", allow_guest_visible=True, schemas=SCHEMAS
    )
    changed = {c.section for c in report if c.section}
    assert {"hpet", "e1000e", "globalstate"} <= {n.split("/")[-1] for n in changed}
    for s in _devices(stream):
        assert s.payload == before[id(s)], s.name
    for old, new in zip(_devices(stream), _devices(out), strict=True):
        where = old.name if old.instance_id == 0 else f"{old.name}#{old.instance_id}"
        if where not in changed:
            assert new is old, where
            continue
        touched = {c.path.split("/")[0] for c in report if c.section == where}
        touched |= {c.new_path for c in report if c.section == where and c.new_path}
        kept = [k for k in old.payload.fields if k not in touched and k in new.payload.fields]
        assert kept, where
        assert all(new.payload.fields[k] is old.payload.fields[k] for k in kept), where


def test_a_step_that_fails_half_way_leaves_its_input_as_it_was() -> None:
    pic = next(s.payload for s in _devices(miglab.load(NET)) if s.name == "i8259")
    sub = describe("i8259/ltim", [field("ltim", "uint8")], version_id=1, minimum_version_id=1)
    pic.subsections["i8259/ltim"] = VMState(sub, 1, {"ltim": 1})
    pic.desc = dataclasses.replace(pic.desc, subsections=(*pic.desc.subsections, sub))
    snapshot = copy.deepcopy(pic)
    reg = Registry()

    @reg.register("i8259", src="a", dst="b")
    def half_way(edit: Edit) -> None:
        edit.set("i8259", "irr", 0x5A, classification="safe")
        edit.rename("i8259", "imr", "mask")
        edit.remove("i8259", "isr")
        edit.add("i8259", "new", "uint8", 7, after="mask")
        edit.remove_subsection("i8259", "i8259/ltim")
        raise CompatError("refused after four edits", path="i8259")

    (step,) = reg.plan("i8259", "a", "b").steps
    with pytest.raises(CompatError, match="after four edits"):
        step([pic])
    assert pic == snapshot
    assert "i8259/ltim" in pic.subsections and "imr" in pic.fields


def test_an_unchanged_state_comes_back_itself_and_a_nested_set_copies_its_path() -> None:
    stream = miglab.load(NET)
    e1000 = next(s.payload for s in _devices(stream) if s.payload.desc.name == "e1000")
    snapshot = copy.deepcopy(e1000)
    reg = Registry()
    reg.register("e1000", src="a", dst="b")(lambda edit: None)

    @reg.register("e1000", src="b", dst="c")
    def nested(edit: Edit) -> None:
        config = bytearray(edit.get("e1000", "parent_obj/config[0]"))
        config[0x3C] ^= 0xFF
        edit.set("e1000", "parent_obj/config[0]", bytes(config), classification="safe")

    same, none = reg.plan("e1000", "a", "b").run([e1000])
    assert same[0] is e1000 and not none.changes
    (new,), report = reg.plan("e1000", "b", "c").run([e1000])
    assert [c.path for c in report] == ["parent_obj/config[0]"]
    assert e1000 == snapshot
    assert new.fields["parent_obj"] is not e1000.fields["parent_obj"]
    assert (
        new.fields["parent_obj"].fields["config[0]"]
        != e1000.fields["parent_obj"].fields["config[0]"]
    )
    assert all(new.fields[k] is v for k, v in e1000.fields.items() if k != "parent_obj")


def test_the_schema_driven_step_leaves_its_input_as_it_was() -> None:
    pic = copy.deepcopy(next(s.payload for s in _devices(miglab.load(NET)) if s.name == "i8259"))
    sub = describe("i8259/ltim", [field("ltim", "uint8")], version_id=1, minimum_version_id=1)
    pic.subsections["i8259/ltim"] = VMState(sub, 1, {"ltim": 1})
    pic.desc = dataclasses.replace(pic.desc, subsections=(*pic.desc.subsections, sub))
    pic.fields = {("irq_ready" if k == "irr" else k): v for k, v in pic.fields.items()}
    pic.desc = dataclasses.replace(
        pic.desc,
        fields=tuple(
            dataclasses.replace(f, name="irq_ready") if f.name == "irr" else f
            for f in pic.desc.fields
        ),
    )
    snapshot = copy.deepcopy(pic)
    (out,), report = SchemaDriven(*SCHEMAS).conform("i8259", [pic])
    assert [(c.action, c.path) for c in report] == [
        ("removed", "irq_ready"),
        ("added", "irr"),
        ("removed", "@i8259/ltim"),
    ]
    assert pic == snapshot
    assert out.subsections == {} and "irr" in out.fields
