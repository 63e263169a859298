"""miglab.compat.schema_driven: the generic step from the two builds' -dump-vmstate schemas.

Real QEMU 7.2 judging the step is ``tests/judge/compat/test_schema_driven.py``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest

import miglab
from miglab.cli import main
from miglab.compat import ChangeReport, convert_stream
from miglab.compat.schema_driven import SchemaDriven
from miglab.errors import CompatError
from miglab.stream.model import Stream
from miglab.stream.vmdesc import refresh_vmdesc
from miglab.vmstate.description import describe, field
from miglab.vmstate.state import VMState
from tests.compat.test_compat import _check_report
from tests.helpers import DATA

SRC = DATA / "q100-pc-q35-10.0-default.mig"
SCHEMAS = (DATA / "schema-10.0-pc-q35-10.0.json", DATA / "schema-7.2-pc-q35-7.2.json")

CONVERSIONS = [
    *[(p, "10.0", "7.2") for p in sorted(DATA.glob("q100-pc-*-10.0-*.mig"))],
    *[(p, "7.2", "10.0") for p in sorted(DATA.glob("q72-pc-*-7.2-*.mig"))],
]


def _schemas(stream: Stream, src: str, to: str) -> tuple[Path, Path]:
    machine = stream.machine or ""
    return (
        DATA / f"schema-{src}-{machine}.json",
        DATA / f"schema-{to}-{machine.replace(src, to)}.json",
    )


@pytest.mark.parametrize(("path", "src", "to"), CONVERSIONS, ids=[c[0].stem for c in CONVERSIONS])
def test_where_the_rules_already_match_the_generic_step_changes_nothing(
    path: Path, src: str, to: str
) -> None:
    """Every real conversion QEMU accepts (test_compat_qemu) is left exactly as the rules made it."""
    stream = miglab.load(path)
    machine = (stream.machine or "").replace(src, to)
    ruled, plain = convert_stream(stream, to_qemu=to, machine=machine, allow_guest_visible=True)
    out, report = convert_stream(
        stream,
        to_qemu=to,
        machine=machine,
        allow_guest_visible=True,
        schemas=_schemas(stream, src, to),
    )
    assert report == plain
    assert out.to_bytes() == ruled.to_bytes()


def _i8259(stream: Stream, instance: int = 0) -> VMState:
    return next(
        s.payload
        for s in stream.sections
        if isinstance(s.payload, VMState) and s.name == "i8259" and s.instance_id == instance
    )


def _with_ltim(level: int) -> Stream:
    """The 10.0 stream with QEMU 10.0's real ``i8259/ltim`` subsection in the first PIC (7.2
    has no such subsection)."""
    stream = miglab.load(SRC)
    pic = _i8259(stream)
    sub = describe("i8259/ltim", [field("ltim", "uint8")], version_id=1, minimum_version_id=1)
    pic.subsections["i8259/ltim"] = VMState(sub, 1, {"ltim": level})
    pic.desc = dataclasses.replace(pic.desc, subsections=(*pic.desc.subsections, sub))
    refresh_vmdesc(stream, [s for s in stream.sections if s.payload is pic])
    return miglab.load(stream.to_bytes())  # as if QEMU had written it


def test_a_subsection_the_destination_lacks_is_dropped_and_reported() -> None:
    stream = _with_ltim(0xFF)
    assert "i8259/ltim" in _i8259(stream).subsections
    with pytest.raises(CompatError, match=r"guest-visible.*i8259:@i8259/ltim"):
        convert_stream(stream, to_qemu="7.2", machine="pc-q35-7.2", schemas=SCHEMAS)
    out, report = convert_stream(
        stream, to_qemu="7.2", machine="pc-q35-7.2", allow_guest_visible=True, schemas=SCHEMAS
    )
    (dropped,) = [c for c in report if c.device == "i8259"]
    assert (dropped.action, dropped.path, dropped.section) == ("removed", "@i8259/ltim", "i8259")
    assert dropped.guest_visible and "schema-driven" in dropped.reason
    assert dropped.before.fields == {"ltim": 0xFF}
    _check_report([_i8259(stream)], [_i8259(out)], ChangeReport((dropped,)))
    back = miglab.load(out.to_bytes())  # the vmdesc entry follows the state
    assert _i8259(back).subsections == {}
    entry = next(
        d for d in back.vmdesc["devices"] if d["name"] == "i8259" and d["instance_id"] == 0
    )
    assert "subsections" not in entry
    # without the schemas the subsection rides along: nothing else removes it
    _, rules = convert_stream(stream, to_qemu="7.2", machine="pc-q35-7.2", allow_guest_visible=True)
    assert not [c for c in rules if c.device == "i8259"]


def test_fields_are_matched_by_name_added_zero_and_removed() -> None:
    stream = miglab.load(SRC)
    pic = copy.deepcopy(_i8259(stream))
    irr = pic.desc.field_named("irr")
    pic.desc = dataclasses.replace(
        pic.desc,
        fields=tuple(
            dataclasses.replace(f, name="irq_ready") if f is irr else f for f in pic.desc.fields
        ),
    )
    pic.fields = {("irq_ready" if k == "irr" else k): v for k, v in pic.fields.items()}
    (out,), report = SchemaDriven(*SCHEMAS).conform("i8259", [pic])
    assert [(c.action, c.path, c.before, c.after) for c in report] == [
        ("removed", "irq_ready", pic.fields["irq_ready"], None),
        ("added", "irr", None, 0),
    ]
    assert all(c.guest_visible for c in report)
    _check_report([pic], [out], report)
    assert list(out.fields) == list(_i8259(stream).fields)  # back in the destination's order
    assert [f.name for f in out.desc.fields] == [f.name for f in _i8259(stream).desc.fields]


def test_a_version_the_destination_cannot_load_is_refused() -> None:
    stream = miglab.load(SRC)
    pic = copy.deepcopy(_i8259(stream))
    pic.version_id = 7
    with pytest.raises(
        CompatError, match=r"i8259 is at version 7; the destination loads versions 1 \.\.\. 1"
    ):
        SchemaDriven(*SCHEMAS).conform("i8259", [pic])


def test_a_device_the_destination_lacks_is_refused() -> None:
    dst = json.loads(SCHEMAS[1].read_text())
    for key in [
        k for k, v in dst.items() if k != "vmschkmachine" and v["Description"]["name"] == "i8259"
    ]:
        del dst[key]
    with pytest.raises(CompatError, match=r"no device 'i8259'.*Unknown savevm section") as err:
        convert_stream(
            miglab.load(SRC),
            to_qemu="7.2",
            machine="pc-q35-7.2",
            allow_guest_visible=True,
            schemas=(SCHEMAS[0], dst),
        )
    assert err.value.path == "i8259"


def test_devices_neither_schema_lists_are_left_alone() -> None:
    """cpu, apic, timer... are registered outside qdev: -dump-vmstate shows them in no build."""
    stream = miglab.load(SRC)
    cpu = next(s.payload for s in stream.sections if s.name == "cpu")
    states, report = SchemaDriven(*SCHEMAS).conform("cpu", [cpu])
    assert states == [cpu] and not report.changes


def test_cli_takes_both_schemas_or_neither(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = _with_ltim(1)
    src = miglab.save(stream, tmp_path / "in.mig")
    out = tmp_path / "out.mig"
    base = ["compat", str(src), "-o", str(out), "--to-qemu", "7.2", "--machine", "pc-q35-7.2"]
    base.append("--allow-guest-visible")
    assert main([*base, "--src-schema", str(SCHEMAS[0])]) == 2
    assert "both --src-schema and --dst-schema" in capsys.readouterr().err
    schemas = ["--src-schema", str(SCHEMAS[0]), "--dst-schema", str(SCHEMAS[1])]
    assert main([*base, *schemas]) == 0
    assert "removed i8259:@i8259/ltim" in capsys.readouterr().out
    assert _i8259(miglab.load(out)).subsections == {}
