"""``miglab.analysis.diff`` and ``miglab diff`` on real streams of data/.

The expected PCI registers and bits come from QEMU's compat properties as
``miglab/knowledge/compat-qemu.json`` cites them (hw_compat_9_1
``x-pcie-ext-tag``: PCI_EXP_DEVCAP_EXT_TAG; hw_compat_7_2
``x-pcie-err-unc-mask``: PCI_ERR_UNC_INTN and PCI_ERR_UNC_TLP_PRF_BLOCKED in
the AER uncorrectable error mask), and are checked against the raw config
bytes, not against what the diff prints.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import miglab
from miglab.analysis.diff import diff_streams
from miglab.cli import main
from miglab.compat.qemu import convert_stream
from miglab.stream.model import SectionKind, Stream
from tests.helpers import DATA

NET_100 = DATA / "q100-pc-q35-10.0-net.mig"


@pytest.fixture(scope="module")
def net_to_72() -> tuple[Stream, Stream]:
    """The 10.0 q35 net guest and its conversion for QEMU 7.2 (guest-visible changes allowed)."""
    src = miglab.load(NET_100)
    out, _ = convert_stream(
        miglab.load(NET_100), to_qemu="7.2", machine="pc-q35-7.2", allow_guest_visible=True
    )
    return src, out


def _config(stream: Stream) -> bytes:
    (e1000e,) = [s for s in stream.sections if s.name.endswith("/e1000e")]
    return bytes(e1000e.payload.fields["parent_obj[0]"].fields["config[1]"])


def test_a_stream_equals_itself() -> None:
    stream = miglab.load(NET_100)
    diff = diff_streams(stream, miglab.load(NET_100))
    assert not diff and diff.sections == ()
    devices = [s for s in stream.sections if s.kind is SectionKind.FULL]
    assert diff.identical == len(devices) + 1  # and RAM's block list


def test_pci_config_is_diffed_by_register_and_bit(net_to_72: tuple[Stream, Stream]) -> None:
    src, out = net_to_72
    before, after = _config(src), _config(out)
    # The raw bytes: PCIe capability at 0xe0 (DEVCAP at +4), AER at 0x100 (UNCOR_MASK at +8).
    assert before[0xE0] == 0x10 and before[0x100:0x102] == b"\x01\x00"
    assert (before[0xE4] & 0x20, after[0xE4] & 0x20) == (0x20, 0)
    mask = [int.from_bytes(c[0x108:0x10C], "little") for c in (before, after)]
    assert mask == [(1 << 22) | (1 << 25), 0]
    assert [i for i in range(len(before)) if before[i] != after[i]] == [0xE4, 0x10A, 0x10B]

    e1000e = diff_streams(src, out).section("e1000e")
    assert e1000e is not None
    pci = [c for c in e1000e.changes if c.path == "parent_obj[0]/config[1]"]
    assert [(c.offset, c.register, c.bits) for c in pci] == [
        (0xE4, "EXP@0xe0 EXP_DEVCAP", ("bit 5 EXT_TAG 1->0",)),
        (0x108, "ERR@0x100 ERR_UNCOR_MASK", ("bit 22 INTN 1->0", "bit 25 TLPPRE 1->0")),
    ]
    assert str(pci[0]).endswith("EXP_DEVCAP: 0x00008020 -> 0x00008000 (bit 5 EXT_TAG 1->0)")


def test_members_renamed_removed_and_resized(net_to_72: tuple[Stream, Stream]) -> None:
    diff = diff_streams(*net_to_72)
    assert diff.machines == ("pc-q35-10.0", "pc-q35-7.2")
    hpet = diff.section("hpet")
    assert hpet is not None
    assert [str(c) for c in hpet.changes] == [
        "num_timers_save: only in A: 3",
        "num_timers: only in B: 3",
    ]
    glob = diff.section("globalstate")
    assert glob is not None
    # QEMU 10.0 keeps the run state in 32 bytes, 7.2 in 100 (migration/global_state.c).
    assert str(glob.changes[0]) == "runstate: 'prelaunch' in 32 bytes -> 'prelaunch' in 100 bytes"
    assert {s.name for s in diff.sections} == {"hpet", "0000:00:04.0/e1000e", "globalstate"}


def test_byte_runs_cover_exactly_the_differing_bytes() -> None:
    a, b = (
        miglab.load(DATA / "q72-pc-q35-7.2-net.mig"),
        miglab.load(DATA / "q100-pc-q35-7.2-net.mig"),
    )
    rtc = diff_streams(a, b).section("mc146818rtc")
    assert rtc is not None
    (cmos,) = [c for c in rtc.changes if c.path == "cmos_data"]
    raw = [
        bytes(next(s for s in x.sections if s.name == "mc146818rtc").payload.fields["cmos_data"])
        for x in (a, b)
    ]
    differ = [i for i in range(len(raw[0])) if raw[0][i] != raw[1][i]]
    assert differ and cmos.offset == differ[0]
    span = range(cmos.offset, cmos.offset + len(bytes.fromhex(cmos.before)))
    assert set(differ) <= set(span) and span[-1] == differ[-1]
    assert bytes.fromhex(cmos.after) == raw[1][span.start : span.stop]


def test_an_array_two_vmdescs_split_differently_compares_as_one() -> None:
    # QEMU 7.2 lists ahci's six ports as one vmdesc entry, 10.0 as five plus one:
    # the reader names the pieces dev and dev#1, the state is the same.
    a, b = (
        miglab.load(DATA / "q72-pc-q35-7.2-net.mig"),
        miglab.load(DATA / "q100-pc-q35-7.2-net.mig"),
    )
    fields = [
        next(s for s in x.sections if s.name.endswith("ich9_ahci")).payload.fields["ahci"].fields
        for x in (a, b)
    ]
    assert (len(fields[0]["dev"]), "dev#1" in fields[0]) == (6, False)
    assert (len(fields[1]["dev"]), type(fields[1]["dev#1"]).__name__) == (5, "VMState")
    assert diff_streams(a, b).section("ich9_ahci") is None


def test_cli_diff_exit_status_and_json(
    net_to_72: tuple[Stream, Stream], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    converted = tmp_path / "net-72.mig"
    converted.write_bytes(net_to_72[1].to_bytes())
    assert main(["diff", str(NET_100), str(NET_100)]) == 0
    devices = sum(s.kind is SectionKind.FULL for s in net_to_72[0].sections)
    assert capsys.readouterr().out.endswith(f"0 section(s) differ, {devices + 1} identical\n")
    assert main(["diff", "--json", str(NET_100), str(converted)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["machines"] == ["pc-q35-10.0", "pc-q35-7.2"]
    (e1000e,) = [s for s in doc["sections"] if s["name"].endswith("e1000e")]
    assert {"offset": 0xE4, "register": "EXP@0xe0 EXP_DEVCAP"}.items() <= e1000e["changes"][
        0
    ].items()
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert main(["diff", str(NET_100), str(text)]) == 2
    assert capsys.readouterr().err.startswith(f"miglab: error: {text}: at offset 0 (0x0): ")
