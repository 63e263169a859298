"""Real QEMU's verdict on the single-bit flips ``verify`` cannot or need not report.

docs/hostile-input.md ("What verify cannot see") rests on these runs: each
flipped stream is loaded into a paused destination QEMU configured like its
source (``QemuBinary.judge``), beside the unflipped stream, and miglab's
verdict is printed next to QEMU's:

* a page address of a live stream turned into another page's (pc.ram page 583's
  copy lands on page 839, which the stream sends too): a valid stream, whose
  guest memory differs in one page;
* an address bit of the RAM end-of-section word: QEMU reads only its flags
  (verify reports it: QEMU never writes one);
* a low section-id bit of a pc-i440fx-2.2 FULL section (no footers) that keeps
  the order: QEMU's loader keeps a FULL section's id only for the footer check
  (``qemu_loadvm_section_start_full``), so it loads;
* a low instance-id bit of a pc-i440fx-2.2 section (no vmdesc, no footers):
  QEMU refuses it (verify reports it from the numbering).

    python benchmarks/undetectable_flips.py      # about a minute per QEMU run on a quiet machine
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import miglab
from miglab.errors import MiglabError
from miglab.qemu import find_qemu
from miglab.stream.pages import RamPages
from miglab.stream.verify import errors, verify

DATA = Path(__file__).resolve().parents[1] / "data"
LIVE = "live-q100-pc-q35-10.0-dirtier.mig"
OLD = "q72-pc-i440fx-2.2-default.mig"


def _live_args() -> dict[str, object]:
    recipe = next(
        s for s in json.loads((DATA / "manifest.json").read_text())["live"] if s["file"] == LIVE
    )
    extra: list[str] = []
    for n in recipe["netdevs"]:
        extra += ["-netdev", n]
    return {
        "machine": recipe["machine"],
        "memory": recipe["memory"],
        "devices": recipe["devices"],
        "extra_args": extra + recipe["extra_args"],
    }


def _flip(name: str, at: int, bit: int) -> bytes:
    raw = bytearray((DATA / name).read_bytes())
    raw[at] ^= 1 << bit
    return bytes(raw)


def _miglab(data: bytes) -> str:
    try:
        miglab.load(data)
    except MiglabError as exc:
        return f"load error: {exc}"
    found = errors(verify(data))
    return "; ".join(str(f) for f in found) or "no error"


def main() -> int:
    old = miglab.load(DATA / OLD)
    hpet = next(s for s in old.sections if s.name == "hpet")
    timer = next(s for s in old.sections if s.name == "timer")
    live = (DATA / LIVE).read_bytes()
    moved = _flip(LIVE, 2929795, 4)  # a page word of pc.ram page 583 -> page 839
    pages = [RamPages(miglab.load(d)) for d in (live, moved)]
    differ = [
        i
        for i in range(len(pages[0].sends("pc.ram")))
        if pages[0].page("pc.ram", i) != pages[1].page("pc.ram", i)
    ]
    print(f"moved page: final pc.ram pages that differ: {differ}")
    end = next(s for s in miglab.load(live).sections if s.kind.value == "end" and s.name == "ram")
    eos_at = int(end.payload.pos[-1]) - 8  # type: ignore[union-attr]
    cases = [
        ("live stream as captured", live, "10.0", _live_args()),
        ("page address -> another sent page", moved, "10.0", _live_args()),
        ("address bit of the RAM EOS word", _flip(LIVE, eos_at + 3, 5), "10.0", _live_args()),
        ("pc-i440fx-2.2 as captured", (DATA / OLD).read_bytes(), "7.2", None),
        ("pc-i440fx-2.2, timer section id 0 -> 1", _flip(OLD, timer.offset + 4, 0), "7.2", None),
        (
            "pc-i440fx-2.2, hpet instance 0 -> 1",
            _flip(OLD, hpet.offset + 6 + len("hpet") + 3, 0),
            "7.2",
            None,
        ),
    ]
    old_args = {"machine": "pc-i440fx-2.2", "memory": "16M"}
    with tempfile.TemporaryDirectory() as tmp:
        for what, data, build, args in cases:
            path = Path(tmp) / "flipped.mig"
            path.write_bytes(data)
            verdict = find_qemu(build).judge(path, timeout=300, **(args or old_args))
            lines = verdict.stderr.strip().splitlines()
            reason = (
                [ln for ln in lines if "savevm" in ln or "load" in ln]
                if not verdict.accepted
                else []
            )
            print(f"{what}: QEMU {build} {verdict.status} {reason} | miglab: {_miglab(data)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
