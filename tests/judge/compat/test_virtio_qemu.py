"""Real QEMU judges miglab's conversions of the virtio device set (7.2 <-> 10.0), both ways."""

from __future__ import annotations

from pathlib import Path

import pytest

import miglab
from miglab.compat import (
    MACHINE_GENERATIONS,
    QEMU_VERSIONS,
    Registry,
    convert_stream,
    default_registry,
)
from miglab.qemu import find_qemu
from tests.helpers import DATA, recipe

CASES = [(fam, to) for fam in ("q35", "i440fx") for to in ("7.2", "10.0")]


def _source(fam: str, to: str) -> Path:
    return DATA / (
        f"q100-pc-{fam}-10.0-virtio.mig" if to == "7.2" else f"q72-pc-{fam}-7.2-virtio.mig"
    )


def _judge(path: Path, src: Path, machine: str, to: str) -> miglab.qemu.JudgeResult:
    r = recipe(src)
    return find_qemu(to).judge(
        path, machine=machine, devices=r["devices"], memory=r["memory"], extra_args=r["extra_args"]
    )


@pytest.mark.qemu
@pytest.mark.parametrize(("fam", "to"), CASES, ids=[f"{f}-to-{t}" for f, t in CASES])
def test_converted_virtio_stream_is_accepted(fam: str, to: str, tmp_path: Path) -> None:
    src = _source(fam, to)
    machine = f"pc-{fam}-{to}"
    out, report = convert_stream(
        miglab.load(src), to_qemu=to, machine=machine, allow_guest_visible=True, keep_layouts=False
    )
    assert [c.device for c in report.guest_visible] == ["virtio-balloon"]
    verdict = _judge(miglab.save(out, tmp_path / "out.mig"), src, machine, to)
    assert verdict.accepted, verdict.stderr


@pytest.mark.qemu
@pytest.mark.parametrize("to", ["7.2", "10.0"])
def test_renaming_the_machine_alone_is_refused_on_the_balloon(to: str, tmp_path: Path) -> None:
    """Without the virtio rules the destination rejects virtio-balloon's PCI config."""
    src = _source("q35", to)
    without = Registry()
    without.add_chain(QEMU_VERSIONS)
    without.add_chain(MACHINE_GENERATIONS)
    for t in default_registry().transforms:
        if t.device != "virtio-balloon":
            without.add(t)
    machine = f"pc-q35-{to}"
    out, _ = convert_stream(
        miglab.load(src),
        to_qemu=to,
        machine=machine,
        allow_guest_visible=True,
        keep_layouts=False,
        registry=without,
    )
    verdict = _judge(miglab.save(out, tmp_path / "out.mig"), src, machine, to)
    assert not verdict.accepted
    assert "Bad config data: i=0x34" in verdict.stderr
