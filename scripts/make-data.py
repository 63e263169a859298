#!/usr/bin/env python3
"""Regenerate data/ (reference streams, -dump-vmstate schemas, machine lists) from manifest.json.

The manifest is the one recipe table: per stream the QEMU version, machine, memory, devices,
extra argv and whether the guest ran.  It also states what the stream must look like
(``vmdesc``, ``configuration``, ``footers``); this script checks those claims against the bytes
QEMU wrote, checks that the same QEMU accepts the stream back (judge), fills in ``size`` and
``sha256``, and refreshes the stream table in data/README.md.  Per QEMU build it also dumps
schemas and records ``-machine help`` (machine type -> description, QEMU's own words).

The manifest's ``live`` list holds streams of *running* guests, made by :func:`make_live`:

* ``guest: "dirtier"``: a 33-byte multiboot kernel (:func:`dirtier_kernel`) that increments
  the first word of ``dirty_pages`` pages from 2 MiB on, forever, and toggles CR0.WP after
  each round so TCG's softmmu TLB is flushed and every round dirties the pages again (a real
  OS does that through context switches).  The guest is migrated while it runs, with
  ``max-bandwidth`` low so that RAM goes in several passes, ``downtime-limit`` 1 ms so that
  precopy cannot converge early, and optionally ``xbzrle``; once QEMU reports ``passes``
  dirty syncs, ``downtime-limit`` is raised so precopy converges.
  The source is then paused, and its ``pmemsave`` of all RAM is the oracle of the final
  page content (``oracle``, gzip).
* ``guest: "ipxe-http"``: SeaBIOS boots the e1000's iPXE, whose DHCP reply (slirp's
  ``bootfile=``) sends it to ``http://10.0.2.100/``; a ``guestfwd`` carries that to a local
  TCP server that accepts and never answers, so libslirp holds an established TCP socket
  and saves it in the ``slirp`` section.  The guest is stopped once ``info usernet``
  shows the connection, then migrated.

Usage:
    python scripts/make-data.py                  # everything
    python scripts/make-data.py --only 'q72-*'   # files matching a name or glob
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import gzip
import hashlib
import json
import shlex
import shutil
import socket
import struct
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from miglab.qemu import QemuBinary, find_qemu
from miglab.qemu._process import Guest, quit_qemu, run_bounded, wait_migration
from miglab.wire import FILE_MAGIC, FILE_VERSION, RAM_EOS, RAM_MEM_SIZE, SectionType

DATA = Path(__file__).resolve().parents[1] / "data"
MANIFEST = DATA / "manifest.json"
README = DATA / "README.md"
TABLE_BEGIN, TABLE_END = "<!-- streams:begin -->", "<!-- streams:end -->"
LIVE_BEGIN, LIVE_END = "<!-- live:begin -->", "<!-- live:end -->"

# Stream bytes this script checks (QEMU-FORMAT.md 1.1-1.4, 1.8, 2.2).
HEADER = FILE_MAGIC.to_bytes(4, "big") + FILE_VERSION.to_bytes(4, "big")
VM_CONFIGURATION, VM_SECTION_START = SectionType.CONFIGURATION, SectionType.START
VM_SECTION_FOOTER = SectionType.FOOTER
PAGE_MASK = 0xFFF


def _be(data: bytes, pos: int, size: int) -> int:
    return int.from_bytes(data[pos : pos + size], "big")


def _has_vmdesc(data: bytes) -> bool:
    """Whether the stream ends in ``00 (EOF) 06 be32-len JSON``: the vmdesc trailer."""
    pos = data.rfind(b"\x00\x06")
    while pos >= 0:
        if _be(data, pos + 2, 4) == len(data) - pos - 6:
            json.loads(data[pos + 6 :])
            return True
        pos = data.rfind(b"\x00\x06", 0, pos)
    return False


def _traits(data: bytes) -> dict[str, bool]:
    """Read configuration block, the RAM START section and what follows it.

    Every stream here begins (after an optional configuration block without subsections)
    with the START section of ``ram`` whose block list ends in EOS; a section footer
    repeating its section id follows it iff the machine sends footers.
    """
    if not data.startswith(HEADER):
        raise ValueError("no QEVM v3 header")
    pos = len(HEADER)
    configuration = data[pos] == VM_CONFIGURATION
    if configuration:
        pos += 5 + _be(data, pos + 1, 4)
    if data[pos] != VM_SECTION_START or data[pos + 6 : pos + 6 + data[pos + 5]] != b"ram":
        raise ValueError(f"expected the START section of ram at offset {pos}")
    section_id = data[pos + 1 : pos + 5]
    pos += 6 + data[pos + 5] + 8
    word = _be(data, pos, 8)
    if word & PAGE_MASK != RAM_MEM_SIZE:
        raise ValueError(f"expected the RAM block list at offset {pos}")
    remaining, pos = word & ~PAGE_MASK, pos + 8
    while remaining > 0:
        pos += 1 + data[pos]
        remaining -= _be(data, pos, 8)
        pos += 8
    if _be(data, pos, 8) != RAM_EOS:
        raise ValueError(f"expected RAM EOS at offset {pos}")
    pos += 8
    footers = data[pos] == VM_SECTION_FOOTER and data[pos + 1 : pos + 5] == section_id
    return {"configuration": configuration, "footers": footers, "vmdesc": _has_vmdesc(data)}


def _record(entry: dict[str, Any], path: Path) -> None:
    data = path.read_bytes()
    entry["size"] = len(data)
    entry["sha256"] = hashlib.sha256(data).hexdigest()


def make_stream(qemu: QemuBinary, entry: dict[str, Any]) -> None:
    """Make one stream, check its claimed traits and that QEMU accepts it back."""
    path = DATA / entry["file"]
    config = {
        "machine": entry["machine"],
        "memory": entry["memory"],
        "devices": entry["devices"],
        "extra_args": entry["extra_args"],
    }
    qemu.make_stream(path, run_seconds=entry["run_seconds"], **config)
    traits = _traits(path.read_bytes())
    claimed = {key: entry[key] for key in traits}
    if traits != claimed:
        raise SystemExit(f"{entry['file']}: manifest says {claimed}, stream has {traits}")
    verdict = qemu.judge(path, **config)
    if not verdict.accepted:
        raise SystemExit(f"{entry['file']}: QEMU {qemu.version} rejects it: {verdict.stderr}")
    _record(entry, path)


def make_schema(qemu: QemuBinary, entry: dict[str, Any]) -> None:
    """Dump one -dump-vmstate schema."""
    path = qemu.dump_vmstate(DATA / entry["file"], machine=entry["machine"])
    _record(entry, path)


def make_machines(qemu: QemuBinary, entry: dict[str, Any]) -> None:
    """Record one build's ``-machine help`` as JSON (type -> description, in QEMU's order)."""
    path = DATA / entry["file"]
    path.write_text(json.dumps(qemu.machines(), indent=1) + "\n")
    _record(entry, path)


def dirtier_kernel(pages: int) -> bytes:
    """A multiboot (a.out kludge) kernel loaded at 1 MiB that dirties ``pages`` pages forever."""
    load = 0x100000
    code = (
        bytes.fromhex("fa")  # cli
        + bytes.fromhex("0f20c0 3500000100 0f22c0")  # eax = cr0 ^ CR0.WP; cr0 = eax: TLB flush
        + bytes.fromhex("bf00002000")  # edi = 0x200000
        + b"\xb9"
        + struct.pack("<I", pages)  # ecx = pages
        + bytes.fromhex("ff07")  # inc dword [edi]
        + bytes.fromhex("81c700100000")  # edi += 4096
        + bytes.fromhex("e2f6")  # loop (to the inc)
        + bytes.fromhex("ebdf")  # jmp (to the cr0 toggle)
    )
    magic, flags = 0x1BADB002, 0x00010000  # bit 16: the header gives the load addresses
    end = load + 32 + len(code)
    header = struct.pack(
        "<8I", magic, flags, -(magic + flags) & 0xFFFFFFFF, load, load, end, end, load + 32
    )
    return header + code


@contextlib.contextmanager
def _silent_server() -> Iterator[int]:
    """A local TCP server that accepts connections and never answers; yields its port."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(srv.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield srv.getsockname()[1]
    finally:
        srv.close()
        for c in held:
            c.close()


def _live_args(entry: dict[str, Any], scratch: Path, port: int | None) -> list[str]:
    args = []
    if entry["guest"] == "dirtier":
        kernel = scratch / "dirtier.bin"
        kernel.write_bytes(dirtier_kernel(entry["dirty_pages"]))
        args += ["-kernel", str(kernel)]
    for netdev in entry["netdevs"]:
        args += ["-netdev", netdev]
    if port is not None:
        args += ["-chardev", f"socket,id=c0,host=127.0.0.1,port={port}"]
    return args


async def _migrate_live(guest: Guest, entry: dict[str, Any], out: Path, dump: Path) -> None:
    qmp = await guest.connect()
    if entry["guest"] == "ipxe-http":
        for _ in range(60):  # until iPXE's HTTP request holds the guestfwd socket open
            await asyncio.sleep(1)
            usernet = await qmp.execute("human-monitor-command", {"command-line": "info usernet"})
            if "ESTABLISHED" in usernet and "10.0.2.100" in usernet:
                break
        else:
            raise SystemExit(f"{entry['file']}: iPXE never connected: {usernet}")
        await qmp.execute("stop")
    else:
        await asyncio.sleep(2)  # the kernel is loaded and running
    if entry.get("xbzrle"):
        caps = [{"capability": "xbzrle", "state": True}]
        await qmp.execute("migrate-set-capabilities", {"capabilities": caps})
    if entry.get("max_bandwidth"):
        await qmp.execute("migrate-set-parameters", {"max-bandwidth": entry["max_bandwidth"]})
    if entry.get("passes"):  # no switchover before the passes: XBZRLE rounds are tiny
        await qmp.execute("migrate-set-parameters", {"downtime-limit": 1})
    await qmp.execute("migrate", {"uri": f"exec:cat > {shlex.quote(str(out))}"})
    while entry.get("passes"):
        info = await qmp.execute("query-migrate")
        if info["status"] not in ("setup", "active"):
            break  # QEMU 10.0 with xbzrle may switch over on its own
        if info["status"] == "active" and info["ram"]["dirty-sync-count"] >= entry["passes"]:
            break
        await asyncio.sleep(0.05)
    if entry.get("passes"):
        with contextlib.suppress(Exception):  # refused once the migration has completed
            await qmp.execute("migrate-set-parameters", {"downtime-limit": 60000})
    status, error = await wait_migration(qmp)
    if status != "completed":
        raise SystemExit(f"{entry['file']}: migration {status}: {error}")
    info = await qmp.execute("query-migrate")
    entry["dirty_syncs"] = info["ram"]["dirty-sync-count"]
    size = int(entry["memory"].rstrip("M")) << 20
    await qmp.execute("pmemsave", {"val": 0, "size": size, "filename": str(dump)})
    await quit_qemu(qmp)


def make_live(qemu: QemuBinary, entry: dict[str, Any]) -> None:
    """Migrate a running guest (see the module docstring); write the stream and its oracle."""
    path = DATA / entry["file"]
    with tempfile.TemporaryDirectory(prefix="miglab-live-") as tmp, _silent_server() as port:
        scratch = Path(tmp)
        use_port = port if entry["guest"] == "ipxe-http" else None
        extra = [*_live_args(entry, scratch, use_port), *entry["extra_args"]]
        argv = qemu._guest_argv(entry["machine"], entry["memory"], entry["devices"], extra)
        with Guest(argv, qemu.env) as guest:
            stream, dump = guest.dir / "stream.mig", guest.dir / "mem.bin"
            try:
                run_bounded(_migrate_live(guest, entry, stream, dump), 300, "live")
            finally:
                guest.wait(5)
            shutil.move(stream, path)
            if entry.get("oracle"):
                (DATA / entry["oracle"]).write_bytes(gzip.compress(dump.read_bytes(), 9))
        verdict = qemu.judge(
            path,
            machine=entry["machine"],
            memory=entry["memory"],
            devices=entry["devices"],
            extra_args=extra,
        )
        if not verdict.accepted:
            raise SystemExit(f"{entry['file']}: QEMU {qemu.version} rejects it: {verdict.stderr}")
    _record(entry, path)
    if entry.get("oracle"):
        entry["oracle_sha256"] = hashlib.sha256((DATA / entry["oracle"]).read_bytes()).hexdigest()


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def stream_table(streams: list[dict[str, Any]]) -> str:
    """Markdown table of every stream: how it was made and what it contains."""
    rows = [
        "| file | QEMU | machine | mem | guest | devices | vmdesc | config | footers | bytes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in streams:
        guest = f"ran {s['run_seconds']} s" if s["run_seconds"] else "paused"
        devices = "<br>".join(f"`{d}`" for d in s["devices"]) or "(none)"
        if s["extra_args"]:
            devices += f"<br>`{' '.join(s['extra_args'])}`"
        rows.append(
            f"| {s['file']} | {s['qemu']} | {s['machine']} | {s['memory']} | {guest} | {devices} "
            f"| {_yes(s['vmdesc'])} | {_yes(s['configuration'])} | {_yes(s['footers'])} "
            f"| {s['size']} |"
        )
    return "\n".join(rows)


def live_table(live: list[dict[str, Any]]) -> str:
    """Markdown table of the streams of running guests."""
    rows = [
        "| file | QEMU | machine | guest | xbzrle | bandwidth | dirty syncs | oracle | bytes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in live:
        bandwidth = f"{s['max_bandwidth'] >> 10} KiB/s" if s.get("max_bandwidth") else "-"
        guest = s["guest"] + (f" ({s['dirty_pages']} pages)" if s.get("dirty_pages") else "")
        rows.append(
            f"| {s['file']} | {s['qemu']} | {s['machine']} | {guest} "
            f"| {_yes(s.get('xbzrle', False))} | {bandwidth} | {s.get('dirty_syncs', '-')} "
            f"| {s.get('oracle', '-')} | {s['size']} |"
        )
    return "\n".join(rows)


def _replace(text: str, begin: str, end: str, body: str) -> str:
    head, rest = text.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def refresh_readme(streams: list[dict[str, Any]], live: list[dict[str, Any]]) -> None:
    text = _replace(README.read_text(), TABLE_BEGIN, TABLE_END, stream_table(streams))
    README.write_text(_replace(text, LIVE_BEGIN, LIVE_END, live_table(live)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", metavar="NAME", help="file name or glob")
    args = parser.parse_args(argv)
    manifest = json.loads(MANIFEST.read_text())
    jobs = [(make_stream, e) for e in manifest["streams"]]
    jobs += [(make_schema, e) for e in manifest["schemas"]]
    jobs += [(make_machines, e) for e in manifest["machines"]]
    jobs += [(make_live, e) for e in manifest.get("live", [])]
    if args.only:
        jobs = [(f, e) for f, e in jobs if any(fnmatch.fnmatch(e["file"], p) for p in args.only)]
    for make, entry in jobs:
        make(find_qemu(entry["qemu"]), entry)
        print(f"{entry['file']}: {entry['size']} bytes", flush=True)
        MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")  # progress survives a failure
    refresh_readme(manifest["streams"], manifest.get("live", []))
    return 0


if __name__ == "__main__":
    sys.exit(main())
