"""miglab.compat: registry, planner, change reports (checked against an independent diff)."""

from __future__ import annotations

import importlib
import json
import pkgutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import miglab
import miglab.compat
from miglab.compat import ChangeReport, Edit, Registry, convert_stream, default_registry, plan
from miglab.errors import CompatError
from miglab.stream.model import SectionKind
from miglab.stream.vmdesc import VmdescVisitor, vmdesc_entry, vmdesc_struct
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate
from tests.helpers import DATA, LIVE, STREAMS, recipe


def _flatten(states: list[VMState]) -> dict[tuple[str, str], Any]:
    """Independent tree flattening: (device, path) -> leaf value; subsections as @name."""
    out: dict[tuple[str, str], Any] = {}

    def walk(device: str, value: Any, path: str) -> None:
        if isinstance(value, VMState):
            for k, v in value.fields.items():
                walk(device, v, f"{path}/{k}" if path else k)
            for k, v in value.subsections.items():
                walk(device, v, f"{path}/@{k}" if path else f"@{k}")
        elif isinstance(value, list) and value and isinstance(value[0], VMState):
            for i, v in enumerate(value):
                walk(device, v, f"{path}[{i}]")
        else:
            out[(device, path)] = bytes(value) if isinstance(value, memoryview) else value

    for s in states:
        walk(s.desc.name, s, "")
    return out


def _diff(a: list[VMState], b: list[VMState]) -> set[tuple[str, str]]:
    fa, fb = _flatten(a), _flatten(b)
    return {k for k in fa.keys() | fb.keys() if fa.get(k, object()) != fb.get(k, object())}


def _covered(report: ChangeReport) -> set[tuple[str, str]]:
    out = set()
    for c in report:
        out.add((c.device, c.path))
        if c.new_path is not None:
            out.add((c.device, c.new_path))
    return out


def _check_report(before: list[VMState], after: list[VMState], report: ChangeReport) -> None:
    diff = _diff(before, after)
    covered = _covered(report)
    for dev, path in diff:
        assert any(
            d == dev
            and (p == path or p == "" or path.startswith(p + "/") or path.startswith(p + "["))
            for d, p in covered
        ), f"silent change {dev}:{path}"
    for dev, path in covered:
        assert any(d == dev and (p == path or path == "" or p.startswith(path)) for d, p in diff), (
            f"reported change {dev}:{path} is not in the trees"
        )


def _states_by_device(path: Path) -> dict[str, VMState]:
    s = miglab.load(path)
    return {x.payload.desc.name: x.payload for x in s.sections if isinstance(x.payload, VMState)}


SOURCES = {  # streams written by each QEMU build, and of each machine generation
    "10.0": sorted(DATA.glob("q100-pc-q35-*.mig")),
    "7.2": sorted(DATA.glob("q72-pc-q35-7.2-*.mig")),
    "machine:10.0": sorted(DATA.glob("q100-pc-q35-10.0-*.mig")),
    "machine:7.2": sorted(DATA.glob("q*-pc-q35-7.2-*.mig")),
}


#: Steps from 5.2 and 11.1 (builds and machine generations) have no data/ stream (a live
#: capture is ~85 MB); tests/judge/compat/test_survival.py runs them on live captures.
WITH_DATA = [t for t in default_registry().transforms if t.src in SOURCES and t.dst in SOURCES]


@pytest.mark.parametrize("t", WITH_DATA, ids=lambda t: f"{t.device}-{t.src}-{t.dst}")
def test_every_registered_transform_reports_exactly_its_changes(t: Any) -> None:
    applied = 0
    for path in SOURCES[t.src]:
        for name, state in _states_by_device(path).items():
            if t.device not in (name, "*"):
                continue
            after, report = t([state])
            _check_report([state], after, report)
            applied += bool(report.changes)
    assert applied, f"no data/ stream exercised {t}"


def test_split_and_merge_devices_are_reported() -> None:
    reg = Registry()
    cpu = _states_by_device(DATA / "q100-pc-q35-10.0-default.mig")["hpet"]

    @reg.register("hpet", src="a", dst="b")
    def split(edit: Edit) -> None:
        import copy
        import dataclasses

        other = copy.deepcopy(edit.state("hpet"))
        other.desc = dataclasses.replace(other.desc, name="hpet-timers")
        edit.add_device(other, reason="timers become their own device")

    @reg.register("hpet", src="b", dst="c")
    def merge(edit: Edit) -> None:
        edit.remove_device("hpet-timers", reason="merged back")

    p = reg.plan("hpet", "a", "c")
    assert [s.fn for s in p.steps] == [split, merge]
    two, r1 = p.steps[0]([cpu])
    assert [s.desc.name for s in two] == ["hpet", "hpet-timers"]
    _check_report([cpu], two, r1)
    one, r2 = p.steps[1](two)
    _check_report(two, one, r2)
    assert [c.action for c in r1 + r2] == ["added", "removed"]
    with pytest.raises(CompatError):
        reg.plan("hpet", "c", "a")


def test_the_default_registry_is_built_when_asked_for_and_shared_by_nobody() -> None:
    for info in pkgutil.iter_modules(miglab.compat.__path__):
        module = importlib.import_module(f"miglab.compat.{info.name}")
        made = [k for k, v in vars(module).items() if isinstance(v, Registry)]
        assert not made, f"a registry built at import: miglab.compat.{info.name}.{made}"
    mine, theirs = default_registry(), default_registry()
    assert [str(t) for t in mine.transforms] == [str(t) for t in theirs.transforms]
    mine.register("hpet", src="10.0", dst="7.2")(lambda edit: None)
    assert len(mine.transforms) == len(theirs.transforms) + 1
    assert len(plan("hpet", "10.0", "7.2", mine).steps) == 2
    assert len(plan("hpet", "10.0", "7.2").steps) == 1


def test_plan_chains_and_prints() -> None:
    p = plan("hpet", "10.0", "7.2")
    assert [s.device for s in p.steps] == ["hpet"]
    assert "hpet: 10.0 -> 7.2" in str(p)
    assert plan("hpet", "7.2", "7.2").steps == ()
    m = plan("e1000e", "machine:10.0", "machine:7.2")
    assert [s.device for s in m.steps] == ["e1000e", "*"]
    # steps between machine generations are no plan between builds, and the reverse
    assert plan("virtio-balloon", "7.2", "10.0").steps == ()
    assert plan("hpet", "machine:7.2", "machine:10.0").steps[0].device == "*"


def test_guest_visible_changes_are_refused_unless_allowed() -> None:
    stream = miglab.load(DATA / "q100-pc-q35-10.0-net.mig")
    with pytest.raises(CompatError, match=r"guest-visible.*e1000e"):
        convert_stream(stream, to_qemu="7.2", machine="pc-q35-7.2")
    out, report = convert_stream(
        stream, to_qemu="7.2", machine="pc-q35-7.2", allow_guest_visible=True
    )
    assert [c.device for c in report.guest_visible] == ["e1000e"]
    assert out.machine == "pc-q35-7.2" and stream.machine == "pc-q35-10.0"
    assert all(c.command != 11 for c in out.commands)
    back = miglab.load(out.to_bytes())  # vmdesc was rewritten consistently
    assert "num_timers" in back.device("hpet").payload.fields


@pytest.mark.parametrize(
    "path",
    [p for p in [*STREAMS, *LIVE] if recipe(p).get("vmdesc", True)],
    ids=lambda p: p.stem,
)
def test_vmdesc_entries_rebuild_exactly_from_state(path: Path) -> None:
    """Every vmdesc entry of every stream, lone ``index`` entries (ide bmdma, fdc drives)
    included, rebuilds to the same JSON text, key order too."""
    s = miglab.load(path)
    assert s.vmdesc is not None
    secs = {(x.name, x.instance_id): x for x in s.sections if x.kind is SectionKind.FULL}
    for dev in s.vmdesc["devices"]:
        rebuilt = vmdesc_entry(secs[(dev["name"], dev["instance_id"])])
        assert json.dumps(rebuilt) == json.dumps(dev), dev["name"]


class _FieldByField(VmdescVisitor):
    takes_runs = False


@pytest.mark.parametrize(
    "name", ["q100-pc-q35-10.0-net", "q100-pc-i440fx-10.0-default", "q72-pc-q35-7.2-usb"]
)
def test_vmdesc_visitor_runs_give_what_the_fields_one_by_one_give(name: str) -> None:
    """The vmdesc visitor's compiled runs write the objects its per-field path writes."""
    s = miglab.load(DATA / f"{name}.mig")
    for x in s.sections:
        if isinstance(x.payload, VMState):
            slow = _FieldByField()
            visit_vmstate(slow, x.payload.desc, x.payload)
            assert json.dumps(slow.entry) == json.dumps(vmdesc_struct(x.payload)), x.name


def _indexed(entry: dict[str, Any]) -> set[tuple[str, int]]:
    out = set()
    for f in entry["fields"]:
        if "index" in f:
            out.add((f["name"], f["index"]))
        if "struct" in f:
            out |= _indexed(f["struct"])
    return out


def test_lone_index_entries_are_rebuilt_with_their_index() -> None:
    s = miglab.load(DATA / "q100-pc-i440fx-10.0-default.mig")
    ide, fdc = s.device("ide"), s.device("fdc")
    assert fdc.payload.fields["state"].desc.field_named("drives[0]").index == 0
    assert {("bmdma", 0), ("bus", 0), ("bus[0].ifs", 0)} <= _indexed(vmdesc_entry(ide))
    assert ("drives", 0) in _indexed(vmdesc_entry(fdc))


def test_from_qemu_wins_over_the_machine_name() -> None:
    """pc-i440fx-2.4 ... 7.2 exist in both builds; ``from_qemu`` says which wrote the stream."""
    old = miglab.load(DATA / "q100-pc-i440fx-2.4-default.mig")
    with pytest.raises(CompatError, match="from_qemu"):
        convert_stream(old, to_qemu="7.2", machine="pc-i440fx-2.4")
    _, report = convert_stream(old, to_qemu="7.2", machine="pc-i440fx-2.4", from_qemu="10.0")
    assert ("hpet", "num_timers_save") in {(c.device, c.path) for c in report}
    # pc-q35-7.2 is 7.2's newest machine, yet QEMU 10.0 wrote this stream
    q100 = miglab.load(DATA / "q100-pc-q35-7.2-default.mig")
    _, guessed = convert_stream(q100, to_qemu="7.2", machine="pc-q35-7.2")
    _, told = convert_stream(q100, to_qemu="7.2", machine="pc-q35-7.2", from_qemu="10.0")
    assert not guessed.changes and "hpet" in {c.device for c in told}


@pytest.mark.parametrize(
    ("name", "to", "machine", "match"),
    [
        ("q72-pc-i440fx-2.2-default.mig", "10.0", "pc-i440fx-2.2", "QEMU 10.0 has no machine"),
        ("q100-pc-q35-10.0-net.mig", "7.2", "pc-q35-8.0", "QEMU 7.2 has no machine"),
        ("q100-pc-q35-10.0-net.mig", "7.2", "pc-i440fx-7.2", "machine family"),
        ("q100-pc-q35-10.0-net.mig", "10.0", "pc-q35-9.0", "does not know how devices behave"),
        ("q100-pc-q35-10.0-net.mig", "7.2", "q35", "not a versioned"),
    ],
)
def test_unknown_or_unconvertible_machines_are_refused(
    name: str, to: str, machine: str, match: str
) -> None:
    with pytest.raises(CompatError, match=match):
        convert_stream(miglab.load(DATA / name), to_qemu=to, machine=machine)


SAME_MACHINE = [
    *[(p, "10.0", "7.2") for p in sorted(DATA.glob("q100-pc-*-7.2-*.mig"))],
    *[(p, "7.2", "10.0") for p in sorted(DATA.glob("q72-pc-*-7.2-*.mig"))],
]


@pytest.mark.parametrize(("path", "src", "to"), SAME_MACHINE, ids=[c[0].stem for c in SAME_MACHINE])
def test_keeping_the_machine_type_leaves_machine_decided_state_alone(
    path: Path, src: str, to: str
) -> None:
    """Read-only PCI config, virtio-balloon MSI-X and e1000e timadj follow the machine type."""
    stream = miglab.load(path)
    _, report = convert_stream(
        stream, to_qemu=to, machine=stream.machine or "", from_qemu=src, allow_guest_visible=True
    )
    assert not report.guest_visible
    touched = {c.device for c in report} - {"hpet", "globalstate", "e1000e"}
    assert not touched, touched
    assert not [c for c in report if c.path == "core.timadj"]


@pytest.mark.parametrize("path", sorted(DATA.glob("q100-pc-*-10.0-*.mig")), ids=lambda p: p.stem)
def test_each_change_is_reported_once(path: Path) -> None:
    """A dropped command (SWITCHOVER_START) is one change, as is every other change."""
    stream = miglab.load(path)
    machine = stream.machine.replace("10.0", "7.2")
    out, report = convert_stream(stream, to_qemu="7.2", machine=machine, allow_guest_visible=True)
    counts = Counter((c.action, c.section or c.device, c.path) for c in report)
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    dropped = [c.name for c in stream.commands if c not in out.commands]
    assert dropped == ["SWITCHOVER_START"]
    assert [c.path for c in report if c.device == "commands"] == dropped
