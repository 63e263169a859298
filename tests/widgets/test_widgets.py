"""Widgets driven from Python: change a control, the output model changes.

The stepper asking real QEMU is ``tests/judge/widgets/test_widgets.py``.
"""

from __future__ import annotations

import gzip
import html
import re
from pathlib import Path

import miglab
from miglab.capabilities import choose_encoder, mask_of
from miglab.compat import convert_stream
from miglab.widgets import (
    CapabilityNegotiator,
    DeviceDrillDown,
    FileOpener,
    StreamDiffer,
    StreamExplorer,
    TransformStepper,
)
from miglab.widgets._html import diff_html, hexdump_html
from tests.helpers import DATA

NET = DATA / "q72-pc-q35-7.2-net.mig"


def _text(markup: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


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


def test_stepper_steps_are_the_conversion_applied_unit_by_unit():
    s = TransformStepper(stream="q100-pc-q35-10.0-net.mig", destination="7.2")
    assert s.source.value == "10.0"
    assert "pc-q35-7.2" in s.summary.value
    titles = [step.title for step in s.steps]
    # Step 0 is the source; the machine type first, then the command 7.2 lacks, then devices.
    assert titles[:3] == [
        "the source stream, unchanged",
        "machine type pc-q35-10.0 -> pc-q35-7.2",
        "command SWITCHOVER_START removed",
    ]
    assert s.step.min == 0 and s.step.max == len(s.steps) - 1
    s.step.value = 2
    assert _text(s.current.value).startswith(f"step 2 of {len(s.steps) - 1}: command SWITCHOVER")
    # The last step is what convert_stream writes, byte for byte.
    out, report = convert_stream(
        miglab.load(DATA / "q100-pc-q35-10.0-net.mig"),
        to_qemu="7.2",
        machine="pc-q35-7.2",
        allow_guest_visible=True,
    )
    assert s.steps[-1].stream.to_bytes() == out.to_bytes()
    assert sum(len(step.changes) for step in s.steps) == len(report.changes)
    # The e1000e step shows the PCI register and bit, not a cut hex string.
    e1000e = next(step.number for step in s.steps if "e1000e" in step.title)
    s.step.value = e1000e
    text = _text(s.current.value)
    assert "EXP@0xe0 EXP_DEVCAP" in text and "bit 5 EXT_TAG 1->0" in text
    assert "ERR@0x100 ERR_UNCOR_MASK" in text
    assert "cannot convert" not in s.summary.value


def test_stepper_same_build_has_nothing_to_do():
    s = TransformStepper({"a": DATA / "q72-pc-q35-7.2-default.mig"}, destination="7.2")
    s.source.value = "7.2"
    assert [step.number for step in s.steps] == [0]
    assert "no step needed" in s.current.value
    assert "0 change(s) in 0 step(s)" in _text(s.summary.value)
    assert s.ask.disabled  # a stream given without its recipe cannot be judged
    s.destination.value = "10.0"  # old to new: the stream as it is, new machine stays 7.2
    assert "pc-q35-7.2" in s.summary.value


def test_stepper_refusal_says_only_that():
    # virtio-rng-pci has 2 MSI-X vectors on pc-q35-10.0 and none on 5.2 machines
    # (hw_compat_7_1 vectors=0): the conversion is refused, and nothing else is claimed.
    s = TransformStepper({"a": DATA / "q100-pc-q35-10.0-virtio.mig"}, destination="5.2")
    s.source.value = "10.0"
    assert s.steps == []
    assert "cannot convert" in s.summary.value and "virtio-rng" in s.summary.value
    assert "no step needed" not in s.current.value and "refused" in s.current.value
    assert s.ask.disabled and s.ask_all.disabled


def test_differ_shows_pci_registers_and_narrows_to_a_section():
    out, _ = convert_stream(
        miglab.load(DATA / "q100-pc-q35-10.0-net.mig"),
        to_qemu="7.2",
        machine="pc-q35-7.2",
        allow_guest_visible=True,
    )
    d = StreamDiffer(DATA / "q100-pc-q35-10.0-net.mig", DATA / "q100-pc-q35-10.0-net.mig")
    assert "identical" in d.summary.value
    d.add_stream("converted", out)
    assert d.b.value == "converted"
    assert "3 section(s) differ" in _text(d.summary.value)
    d.section.value = "0000:00:04.0/e1000e"
    text = _text(d.table.value)
    assert "bit 22 INTN 1->0; bit 25 TLPPRE 1->0" in text
    assert "hpet" not in text


def test_opener_opens_a_compressed_stream_and_says_why_not(tmp_path: Path):
    gz = tmp_path / "net.mig.gz"
    gz.write_bytes(gzip.compress(NET.read_bytes()))
    o = FileOpener(str(gz))
    got: list[str] = []
    e = StreamExplorer(DATA / "q72-pc-q35-7.2-default.mig")
    o.on_open(lambda label, stream: (got.append(label), e.show(stream)))
    stream = o.open_file()
    assert stream is not None and got == [str(gz)]
    assert "gzip" in _text(o.status.value) and "pc-q35-7.2" in _text(o.status.value)
    assert any(label.startswith("0000:00:04.0/e1000e") for label, _ in e.section.options)
    o.path.value = str(tmp_path / "missing.mig")
    assert o.open_file() is None
    assert "cannot open" in o.status.value and "missing.mig" in o.status.value
    old = DATA / "q72-pc-i440fx-2.2-default.mig"  # no vmdesc: the hint names the schema
    o.path.value = str(old)
    assert o.open_file() is not None and "give the schema" in o.status.value
    o.schema.value = str(DATA / "schema-7.2-pc-i440fx-2.2.json")
    plain = sum(not s.decoded for s in miglab.load(old).sections)
    schemed = o.open_file()
    assert schemed is not None and sum(not s.decoded for s in schemed.sections) < plain


def test_explorer_search_narrows_the_fields():
    e = StreamExplorer(NET)
    e.section.value = next(i for label, i in e.section.options if "e1000e" in label)
    every = len(e.field.options)
    e.search.value = "ITR"  # case-insensitive
    assert 0 < len(e.field.options) < every
    assert all("itr" in label.lower() for label, _ in e.field.options)


def test_drilldown_shows_a_device_across_the_four_releases():
    d = DeviceDrillDown()
    assert d.device.value == "e1000e"
    assert "5.2: v1 · 7.2: v1 · 10.0: v1 · 11.1: v1" in _text(d.versions.value)
    d.changes_only.value = True
    # hw/net/e1000e.c: 8.x retired the itr/eitr flags into padding and added core.timadj
    # (an 8-byte int64); data/ has no 8.x or 9.x schema, so 10.0 is where it shows.
    history = dict(zip(d.fields.index.get_level_values("path"), d.fields["history"], strict=False))
    assert history["core.timadj"] == "added in 10.0"
    assert history["core.itr_intr_pending"] == "removed in 10.0"
    timadj = d.fields[d.fields.index.get_level_values("path") == "core.timadj"].iloc[0]
    assert list(timadj[["5.2", "7.2", "10.0", "11.1"]]) == ["", "", "v0 8B", "v0 8B"]
    assert "core.timadj" in _text(d.table.value)
    d.search.value = "i8259"
    assert set(d.device.options) == {"isa-i8259", "kvm-i8259"}
