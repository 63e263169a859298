"""Widgets driven from Python: change a control, the output model changes."""

from __future__ import annotations

import re

from conftest import DATA

import miglab
from miglab.capabilities import choose_encoder, mask_of
from miglab.widgets import CapabilityNegotiator, StreamExplorer, TransformStepper
from miglab.widgets._html import diff_html, hexdump_html

NET = DATA / "q72-pc-q35-7.2-net.mig"


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


def test_explorer_section_pick_shows_its_fields_and_bytes():
    e = StreamExplorer(NET)
    raw = NET.read_bytes()
    fw = next(i for label, i in e.section.options if label.startswith("fw_cfg "))
    e.section.value = fw
    rec = e.record
    assert rec.name == "fw_cfg"
    assert "fw_cfg/dma.dma_addr" in _text(e.table.value)
    # The dump starts at the section's offset and shows its bytes.
    first = _text(e.hexview.value).splitlines()[0]
    assert first.startswith(f"{rec.offset:08x}  ")
    assert first.split("  ")[1].replace(" ", "") == raw[rec.offset : rec.offset + 16].hex()


def test_explorer_field_pick_highlights_its_bytes():
    e = StreamExplorer(miglab.load(NET))
    e.section.value = next(i for label, i in e.section.options if label.startswith("fw_cfg "))
    before = e.hexview.value
    row = e.fields[e.fields.path == "fw_cfg/dma.dma_addr"].index[0]
    e.field.value = int(row)
    assert e.hexview.value != before
    marked = re.findall(r"<span style='[^']*'>([0-9a-f]{2})</span>", e.hexview.value)
    f = e.fields.loc[row]
    raw = NET.read_bytes()
    assert "".join(marked) == raw[f["offset"] : f["offset"] + f["size"]].hex()
    assert len(marked) == 8


def test_hexdump_marks_range_and_scrolls_to_it():
    data = bytes(range(256)) * 8
    out = _text(hexdump_html(data, 100, mark=(100 + 1500, 100 + 1502), limit=64))
    assert "bytes above" in out
    assert f"{100 + 1488:08x}" in out


def test_diff_highlights_only_the_difference():
    out = diff_html("abcXdef", "abcYdef")
    assert out.count("<span") == 2
    assert ">X<" in out and ">Y<" in out


def test_negotiator_toggles_change_the_mask_and_encoder():
    n = CapabilityNegotiator()
    assert n.mask == mask_of(["encoder-legacy", "encoder-json", "compat-transforms"])
    assert "json" in _text(n.result.value)
    n.destination["encoder-cbor"].value = True
    assert choose_encoder(n.mask) == "cbor"
    assert "encoder-cbor" in _text(n.result.value)
    n.source["compat-transforms"].value = False
    assert "compat transformsno" in _text(n.result.value)
    for box in n.source.values():
        box.value = False
    assert n.mask == 0
    assert "legacy" in _text(n.result.value)


def test_stepper_new_to_old_steps_through_the_report():
    s = TransformStepper(stream="q100-pc-q35-10.0-net.mig", destination="7.2")
    assert s.source.value == "10.0"
    assert "pc-q35-7.2" in s.summary.value
    assert len(s.report.changes) > 3
    first = s.current.value
    s.step.value = 2
    assert s.current.value != first
    assert s.change is s.report.changes[2]
    assert f"step 3/{len(s.report.changes)}" in _text(s.current.value)
    s.device.value = "e1000e"
    assert all(c.device == "e1000e" for c in s._steps)
    assert s.step.max == len(s._steps) - 1
    assert "e1000e:" in _text(s.current.value)


def test_stepper_same_build_has_nothing_to_do():
    s = TransformStepper({"a": DATA / "q72-pc-q35-7.2-default.mig"}, destination="7.2")
    s.source.value = "7.2"
    assert s.report.changes == ()
    assert "no changes" in s.current.value
    assert "0 changes" in _text(s.summary.value)
    s.destination.value = "10.0"  # old to new: the stream as it is, new machine stays 7.2
    assert "pc-q35-7.2" in s.summary.value
