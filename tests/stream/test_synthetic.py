"""Synthetic streams (miglab.stream.synthetic): valid, exact page mix, known content."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import miglab
from miglab.errors import MiglabError
from miglab.stream import RamPayload, SectionKind
from miglab.stream.synthetic import (
    KINDS,
    expected_page,
    page_kinds,
    parse_mix,
    synthetic_stream,
    write_synthetic,
)
from miglab.vmstate import VMState, describe, field
from tests.helpers import DATA, ROOT

MIX = {"zero": 0.25, "random": 0.5, "repeated": 0.25}


def real_devices():
    src = miglab.load(DATA / "q72-pc-q35-7.2-default.mig")
    return [
        (s.name, s.instance_id, s.payload)
        for s in src.sections
        if s.kind is SectionKind.FULL and isinstance(s.payload, VMState)
    ]


def test_loads_decodes_and_round_trips():
    devices = real_devices()
    s = synthetic_stream(ram_bytes=4 << 20, mix=MIX, devices=devices, seed=1)
    assert s.machine == "pc-q35-7.2"
    full = [x for x in s.sections if x.kind is SectionKind.FULL]
    assert [(x.name, x.instance_id) for x in full] == [(n, i) for n, i, _ in devices]
    for sec, (_, _, state) in zip(full, devices, strict=True):
        assert isinstance(sec.payload, VMState)
        assert sec.payload.fields == state.fields
    data = s.to_bytes()
    assert miglab.load(data).to_bytes() == data


def test_page_mix_counts_are_exact():
    s = synthetic_stream(ram_bytes=1 << 20, mix=MIX, seed=3)
    frame = miglab.ram_frame(s)
    row = frame[frame["block"] == "pc.ram"].iloc[0]
    assert row["pages"] == 256
    assert row["zero_pages"] == 64
    assert row["data_pages"] == 192


def test_page_content_is_what_was_generated():
    seed = 7
    s = synthetic_stream(ram_bytes=2 << 20, mix=MIX, seed=seed)
    kinds = page_kinds(512, MIX, seed)
    seen = 0
    for sec in s.sections:
        if not isinstance(sec.payload, RamPayload):
            continue
        for block, offset, _flags, data in sec.payload.pages():
            assert block == "pc.ram"
            i = offset // 4096
            want = expected_page(i, int(kinds[i]), seed)
            if KINDS[kinds[i]] == "zero":
                assert bytes(data) == b"\x00"  # ZERO record: fill byte 0
            else:
                assert bytes(data) == want
            seen += 1
    assert seen == 512
    repeated = [i for i in range(512) if KINDS[kinds[i]] == "repeated"]
    assert len({expected_page(i, 2, seed) for i in repeated}) == 1
    random = [i for i in range(512) if KINDS[kinds[i]] == "random"]
    assert len({expected_page(i, 1, seed) for i in random}) == len(random)


def test_seed_decides_content():
    a = synthetic_stream(ram_bytes=1 << 20, mix=MIX, seed=0).to_bytes()
    b = synthetic_stream(ram_bytes=1 << 20, mix=MIX, seed=0).to_bytes()
    c = synthetic_stream(ram_bytes=1 << 20, mix=MIX, seed=1).to_bytes()
    assert a == b and a != c


def test_continue_flags_as_qemu_sets_them():
    s = synthetic_stream(ram_bytes=2 << 20, mix={"zero": 1}, seed=0)
    parts = [x.payload for x in s.sections if x.kind is SectionKind.PART]
    named = np.concatenate([p.named for p in parts])
    assert named[0] and not named[1:].any()  # only the first record names pc.ram


def test_hand_made_device_description():
    desc = describe(
        "synth",
        [
            field("count", "uint8"),
            field("regs", "uint32", num_field="count"),
            field("mac", "buffer", size=6),
        ],
    )
    state = VMState(
        desc, 1, {"count": 3, "regs": [1, 2, 0xFFFFFFFF], "mac": b"\x52\x54\x00\x12\x34\x56"}
    )
    s = synthetic_stream(ram_bytes=1 << 16, devices=[("0000:00:05.0/synth", 0, state)])
    got = s.device("0000:00:05.0/synth").payload
    assert got.fields == state.fields
    assert s.vmdesc["devices"][0]["vmsd_name"] == "synth"


def test_write_to_disk_equals_in_memory(tmp_path):
    path = write_synthetic(
        tmp_path / "s.mig", ram_bytes=1 << 20, mix=MIX, seed=5, devices=real_devices()
    )
    mem = synthetic_stream(ram_bytes=1 << 20, mix=MIX, seed=5, devices=real_devices())
    assert path.read_bytes() == mem.to_bytes()
    assert miglab.load(path).to_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ram_bytes": 0},
        {"ram_bytes": 4097},
        {"ram_bytes": 1 << 16, "mix": {"ones": 1.0}},
        {"ram_bytes": 1 << 16, "mix": {"zero": -1.0}},
        {"ram_bytes": 1 << 16, "page_size": 3000},
    ],
)
def test_bad_arguments(kwargs):
    with pytest.raises(MiglabError):
        synthetic_stream(**kwargs)


def test_parse_mix():
    assert parse_mix("zero=0.25,random=0.5,repeated=0.25") == MIX
    with pytest.raises(MiglabError):
        parse_mix("zero=lots")


def test_cli(tmp_path):
    out = tmp_path / "s.mig"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "make-synthetic.py"),
            str(out),
            "--ram",
            "1M",
            "--mix",
            "zero=0.5,random=0.5",
            "--seed",
            "0",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    frame = miglab.ram_frame(miglab.load(out))
    assert int(frame["zero_pages"].sum()) == 128
    bad = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "make-synthetic.py"),
            str(out),
            "--ram",
            "1M",
            "--mix",
            "x=1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "unknown page kinds" in bad.stderr


def test_later_passes_resend_pages_and_the_final_content_stays():
    pages, seed = 1024, 4
    s = synthetic_stream(ram_bytes=pages * 4096, mix=MIX, seed=seed, passes=3)
    kinds = page_kinds(pages, MIX, seed)
    final: dict[int, bytes] = {}
    sends = 0
    for sec in s.sections:
        if isinstance(sec.payload, RamPayload):
            for _, off, flags, data in sec.payload.pages():
                sends += 1
                final[off // 4096] = bytes(data) if flags & 0x08 else bytes([data[0]]) * 4096
    assert sorted(final) == list(range(pages))
    assert pages * 1.3 < sends < pages * 1.7  # two passes resending about a quarter each
    assert all(final[i] == expected_page(i, int(kinds[i]), seed) for i in range(pages))
    assert miglab.load(s.to_bytes()).to_bytes() == s.to_bytes()
