"""miglab.live: addresses, the stream pump over sockets, §1 decoding without the trailer, and
live migrations of the running test guest through the proxy between real QEMUs.

The pump tests feed real streams from data/ through a socket pair (no QEMU): the same QEMU
in and out must give back the very bytes, and a conversion must give the bytes
``miglab compat`` (:func:`~miglab.compat.convert_stream`) writes for the same stream, as
both run the same conversion.  The live tests (marked ``qemu``) migrate the guest from a
source QEMU to a destination QEMU through :func:`~miglab.live.proxy_once` and ask the guest,
by its heartbeat, whether it kept running.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from miglab.compat import convert_stream
from miglab.errors import AddressError, MigrationFormatError, TruncatedStreamError
from miglab.live import Address, ProxySummary, parse_address, proxy_once, source_decoding
from miglab.live import pump as pump_module
from miglab.live.inbound import Window, new_buffer
from miglab.live.pump import Pump, PumpResult
from miglab.stream.model import Opaque, Section
from miglab.stream.reader import load
from miglab.wire import RAM_PAGE_KINDS
from tests.helpers import DATA


# --- addresses ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "kind", "host", "port", "path"),
    [
        ("tcp:127.0.0.1:4444", "tcp", "127.0.0.1", 4444, ""),
        ("tcp:[::1]:5", "tcp", "::1", 5, ""),
        ("tcp:localhost:0", "tcp", "localhost", 0, ""),
        ("unix:/run/mig.sock", "unix", "", 0, "/run/mig.sock"),
    ],
)
def test_parse_address(text: str, kind: str, host: str, port: int, path: str) -> None:
    a = parse_address(text)
    assert (a.kind, a.host, a.port, a.path) == (kind, host, port, path)
    assert a.uri == text


@pytest.mark.parametrize(
    "text", ["tcp:1.2.3.4", "tcp::80", "tcp:h:99999", "tcp:h:x", "unix:", "exec:cat", "h:1",
             "unix:/s,server=on"],
)  # fmt: skip
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(AddressError, match="expected tcp:HOST:PORT or unix:PATH"):
        parse_address(text)


def test_unix_listen_and_connect(tmp_path: Path) -> None:
    a = parse_address(f"unix:{tmp_path}/s")
    with a.listen() as server, a.connect() as client:
        peer, _ = server.accept()
        client.sendall(b"QEVM")
        assert peer.recv(4) == b"QEVM"
        peer.close()


# --- the window and the pump over sockets -------------------------------------------------
@contextlib.contextmanager
def piped(data: bytes, received: bytearray) -> Iterator[tuple[socket.socket, socket.socket]]:
    """Two socket pairs around what a test pumps: yields the source's end to read and the
    destination's end to write; threads feed ``data`` in and collect what comes out in
    ``received`` (kept when the pump raises)."""
    src_out, src_in = socket.socketpair()
    dst_out, dst_in = socket.socketpair()

    def feed() -> None:
        try:
            src_out.sendall(data)
            src_out.shutdown(socket.SHUT_WR)
        except OSError:  # the pump gave up and closed its side
            pass

    def drain() -> None:
        while chunk := dst_in.recv(1 << 20):
            received.extend(chunk)

    threads = [threading.Thread(target=feed), threading.Thread(target=drain)]
    for t in threads:
        t.start()
    try:
        yield src_in, dst_out
    finally:
        dst_out.shutdown(socket.SHUT_WR)
        src_in.close()
        for t in threads:
            t.join()
        for s in (src_out, dst_out, dst_in):
            s.close()


@pytest.mark.parametrize("seed", range(4))
def test_window_hands_on_every_byte_in_order(seed: int) -> None:
    # Random receives, forwards, takes and drops against a model of the stream, with a
    # chunk small enough that the buffer grows; the buffer handed in (made before a source
    # connects) is the one received into, and a small leftover moves to its front first.
    rng = random.Random(seed)
    data = rng.randbytes(200_000)
    got, expected = bytearray(), bytearray()
    with piped(data, got) as (src_in, dst_out):
        buf = new_buffer(4096)
        w = Window(src_in, dst_out, chunk=4096, buf=buf)
        assert w.buf is buf
        at = 0
        while at < len(data):
            n = min(rng.randrange(1, 9000), len(data) - at)
            w.need(n, "a piece")
            assert w.peek(n) == data[at : at + n] and w.offset == at
            what = rng.random()
            if what < 0.6:
                w.forward(n)
                expected += data[at : at + n]
            elif what < 0.8:
                assert w.take(n) == data[at : at + n]
            else:
                w.consume(n)
            at += n
            left = w.available
            if left <= 4096 and w.receive():
                assert w.pos == 0 and bytes(w.buf[:left]) == data[at : at + left]
        assert not w.receive() and w.closed
    assert got == expected and w.bytes_in == len(data) and w.bytes_out == len(expected)


def pump_bytes(
    data: bytes, sink: bytearray | None = None, **options: object
) -> tuple[bytes, PumpResult]:
    """Run ``data`` through a :class:`Pump` between two socket pairs; the bytes sent on
    (also collected in ``sink``, which keeps them when the pump raises)."""
    received = sink if sink is not None else bytearray()
    with piped(data, received) as (src_in, dst_out):
        result = Pump(Window(src_in, dst_out), **options).run()  # type: ignore[arg-type]
    return bytes(received), result


TRANSPARENT = [
    ("q72-pc-i440fx-2.2-default.mig", "7.2", "pc-i440fx-2.2"),  # no config, footers, vmdesc
    ("q72-pc-i440fx-2.3-default.mig", "7.2", "pc-i440fx-2.3"),  # vmdesc, no footers
    ("q100-pc-q35-10.0-virtio.mig", "10.0", "pc-q35-10.0"),
    ("live-q72-pc-q35-7.2-dirtier-xbzrle.mig", "7.2", "pc-q35-7.2"),  # passes, XBZRLE
    ("live-q100-pc-q35-10.0-slirp-tcp.mig", "10.0", "pc-q35-10.0"),  # slirp with TCP state
]


@pytest.mark.parametrize(("name", "qemu", "machine"), TRANSPARENT, ids=[t[0] for t in TRANSPARENT])
def test_same_qemu_is_byte_transparent(name: str, qemu: str, machine: str) -> None:
    data = (DATA / name).read_bytes()
    out, result = pump_bytes(data, src_qemu=qemu, to_qemu=qemu, machine=machine)
    assert out == data
    assert result.complete and not result.report.changes
    stream = load(DATA / name)
    sections = [r for r in stream.records if isinstance(r, Section)]
    assert result.device_sections == sum(s.name != "ram" for s in sections)
    assert result.pages == sum(
        sum(1 for _ in s.payload.pages()) for s in sections if s.name == "ram"
    )


def _passes_on_the_wire(path: Path) -> tuple[int, int]:
    """(passes, page records) of a stream, from the file reader's RAM records: a pass
    starts where the page addresses (block by block, in block-list order) start over."""
    passes = pages = 0
    last = -1
    for s in load(path).records:
        if not (isinstance(s, Section) and s.name == "ram"):
            continue
        mask = s.payload.page_size - 1
        for word, block, _ in s.payload.records():
            if word & mask & RAM_PAGE_KINDS:
                at = block << 48 | (word & ~mask)
                passes += last < 0 or at <= last
                last = at
                pages += 1
    return passes, pages


LIVE = ["live-q72-pc-q35-7.2-dirtier.mig", "live-q100-pc-q35-10.0-dirtier.mig"]


@pytest.mark.parametrize("scan", ["runs", "page by page"])
@pytest.mark.parametrize("name", LIVE)
def test_live_passes_are_counted(name: str, scan: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # data/README.md: these captures were held for 10 dirty syncs; pages were re-sent pass
    # by pass.  Runs of whole pages are checked as one (pump._page_run) or one by one.
    if scan == "page by page":
        monkeypatch.setattr(pump_module, "_MIN_RUN", 1 << 30)
    qemu = "7.2" if "q72" in name else "10.0"
    data = (DATA / name).read_bytes()
    _, result = pump_bytes(data, src_qemu=qemu, to_qemu=qemu, machine=f"pc-q35-{qemu}")
    passes, pages = _passes_on_the_wire(DATA / name)
    assert passes >= 5
    assert (result.passes, result.pages) == (passes, pages)


def test_conversion_is_the_compat_one() -> None:
    name = "q100-pc-q35-10.0-net.mig"
    data = (DATA / name).read_bytes()
    dec = source_decoding("10.0", "pc-q35-10.0")
    out, result = pump_bytes(
        data, src_qemu="10.0", to_qemu="7.2", machine="pc-q35-7.2",
        schema=dec.schema, descriptions=dec.descriptions, allow_guest_visible=True,
    )  # fmt: skip
    ref, report = convert_stream(
        load(DATA / name), to_qemu="7.2", machine="pc-q35-7.2", allow_guest_visible=True
    )
    assert report.changes  # the pair really converts something
    # the same changes (the configuration block comes first on the wire, last in a file)
    assert sorted(map(repr, result.report.changes)) == sorted(map(repr, report.changes))
    assert out == ref.to_bytes()
    assert result.decoded == result.device_sections


def test_pc_2_2_device_sections_decode_from_the_build_descriptions() -> None:
    """§1: pc-i440fx-2.2 sends no vmdesc; the 7.2 build's harvest and schema decode it."""
    path = DATA / "q72-pc-i440fx-2.2-default.mig"
    bare = [s for s in load(path).records if isinstance(s, Section) and s.name != "ram"]
    assert all(isinstance(s.payload, Opaque) for s in bare)  # nothing without descriptions
    dec = source_decoding("7.2", "pc-i440fx-2.2")
    stream = load(path, schema=dec.schema, descriptions=dec.descriptions)
    devices = [s for s in stream.records if isinstance(s, Section) and s.name != "ram"]
    decoded = [s for s in devices if not isinstance(s.payload, Opaque)]
    assert len(devices) == 28
    assert len(decoded) >= 0.95 * len(devices)
    assert stream.to_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    ("cut", "error"),
    [
        (lambda d: b"QEVN" + d[4:], MigrationFormatError),  # bad magic
        (lambda d: d[: len(d) // 2], TruncatedStreamError),  # source died in RAM
        (lambda d: d[:-40000], TruncatedStreamError),  # source died in device state
    ],
    ids=["magic", "half", "device-state"],
)
def test_garbled_source_fails_cleanly(cut: object, error: type[Exception]) -> None:
    data = (DATA / "q100-pc-q35-10.0-virtio.mig").read_bytes()
    with pytest.raises(error):
        pump_bytes(cut(data), src_qemu="10.0", to_qemu="10.0", machine="pc-q35-10.0")  # type: ignore[operator]


# --- real QEMU, the running guest ---------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def live_migrate(
    src: str, dst: str, machine_src: str, machine_dst: str, devices: str, tmp: Path
) -> tuple[ProxySummary, bool, str]:
    """Move the running guest from QEMU ``src`` to ``dst`` through the proxy.

    Returns the proxy's summary, whether the guest survived (survival's own verdict on the
    destination's console) and why.
    """
    from miglab.qemu import default_guest, find_qemu
    from miglab.qemu._process import Guest, quit_qemu, run_bounded, wait_migration
    from miglab.qemu.guest import device_set, vm_args
    from miglab.qemu.heartbeat import parse_console
    from miglab.qemu.survival import BEATS, _Expect, _verdict

    spec, dset = default_guest(), device_set(devices)
    src_bin, dst_bin = find_qemu(src), find_qemu(dst)
    con_src, con_dst = tmp / "src.log", tmp / "dst.log"
    dport = _free_port()
    src_argv = src_bin.command(*vm_args(spec, dset, machine=machine_src, console=con_src))
    dst_argv = dst_bin.command(
        *vm_args(spec, dset, machine=machine_dst, console=con_dst),
        "-S", "-incoming", f"tcp:127.0.0.1:{dport}",
    )  # fmt: skip
    summaries: list[ProxySummary] = []
    listening: list[Address] = []  # where the proxy listens: the port it was given for 0
    bound = threading.Event()

    def ready(at: Address) -> None:
        listening.append(at)
        bound.set()

    def proxy() -> None:
        summaries.append(
            proxy_once(
                parse_address("tcp:127.0.0.1:0"),
                parse_address(f"tcp:127.0.0.1:{dport}"),
                src_qemu=src, to_qemu=dst, machine=machine_dst, allow_guest_visible=True,
                ready=ready, accept_timeout=300,
            )
        )  # fmt: skip

    def text(path: Path) -> str:
        return path.read_text(errors="replace") if path.exists() else ""

    with Guest(src_argv, src_bin.env) as s_proc, Guest(dst_argv, dst_bin.env) as d_proc:

        async def run() -> tuple[bool, str]:
            s = await s_proc.connect()
            d = await d_proc.connect()
            try:
                while not ((c := parse_console(text(con_src))).last and c.last.counter >= 3
                           and c.last.net_ok):  # fmt: skip
                    await asyncio.sleep(0.2)
                thread = threading.Thread(target=proxy)
                thread.start()
                assert bound.wait(60), "the proxy did not listen within 60 s"
                await s.execute("migrate", {"uri": listening[0].uri})
                status, error = await wait_migration(s)
                source_console = parse_console(text(con_src))
                thread.join(120)
                if status != "completed":
                    return False, f"source migration {status}: {error}"
                d_status, d_error = await wait_migration(d)
                if d_status != "completed":
                    return False, f"destination {d_status}: {d_error}; {d_proc.stderr()}"
                await d.execute("cont")
                last = source_console.last
                assert last is not None
                expect = _Expect(last.counter, last.taint, spec.disk_md5, dset.nics, BEATS)
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    verdict, why = _verdict(parse_console(text(con_dst)), expect)
                    if verdict is not None:
                        return verdict, why
                    await asyncio.sleep(0.2)
                return False, "no verdict within 60 s of cont"
            finally:
                await quit_qemu(s)
                await quit_qemu(d)

        survived, why = run_bounded(run(), 400, f"live {src} -> {dst}")
    return summaries[0], survived, why


def _need(*builds: str) -> None:
    from miglab.qemu import GuestNotFound, QemuNotFound, default_guest, find_qemu

    try:
        default_guest()
        for b in builds:
            find_qemu(b)
    except (GuestNotFound, QemuNotFound) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc} (CI must have it: scripts/setup.sh)")
        pytest.skip(str(exc))


@pytest.mark.qemu
def test_same_release_through_the_proxy_is_transparent_and_survives(tmp_path: Path) -> None:
    _need("10.0")
    summary, survived, why = live_migrate(
        "10.0", "10.0", "pc-q35-10.0", "pc-q35-10.0", "legacy", tmp_path
    )
    assert summary.error is None and summary.complete, summary
    assert summary.bytes_in == summary.bytes_out > 64 << 20  # the whole 128 MiB guest, as is
    assert not summary.changes.changes
    assert survived, why


@pytest.mark.qemu
def test_10_0_to_7_2_live_through_the_proxy_survives(tmp_path: Path) -> None:
    _need("10.0", "7.2")
    summary, survived, why = live_migrate(
        "10.0", "7.2", "pc-q35-10.0", "pc-q35-7.2", "legacy", tmp_path
    )
    assert summary.error is None and summary.complete, summary
    assert summary.changes.changes  # machine type and devices converted on the fly
    assert summary.decoded == summary.device_sections
    assert not summary.changes.options
    assert survived, f"{why}\n{summary}\n{summary.changes}"


def test_serve_proxies_one_migration_after_another(tmp_path: Path) -> None:
    from miglab.live import serve

    streams = [DATA / "q100-pc-q35-10.0-virtio.mig", DATA / "q100-pc-q35-10.0-default.mig"]
    listen, dest = parse_address(f"unix:{tmp_path}/in"), parse_address(f"unix:{tmp_path}/out")
    received: list[bytes] = []
    with dest.listen(backlog=2) as server:

        def destination() -> None:
            for _ in streams:
                conn, _ = server.accept()
                with conn:
                    chunks = []
                    while chunk := conn.recv(1 << 20):
                        chunks.append(chunk)
                    received.append(b"".join(chunks))

        sink = threading.Thread(target=destination)
        sink.start()
        bound = threading.Event()
        summaries = serve(listen, dest, src_qemu="10.0", to_qemu="10.0", machine="pc-q35-10.0",
                          ready=lambda _at: bound.set())  # fmt: skip
        got: list[ProxySummary] = []
        proxy = threading.Thread(target=lambda: got.extend(itertools.islice(summaries, 2)))
        proxy.start()
        assert bound.wait(30)
        for path in streams:
            _send(listen.connect(), path)
        proxy.join(30)
        summaries.close()
        sink.join(30)
    assert received == [p.read_bytes() for p in streams]
    assert [s.bytes_in for s in got] == [p.stat().st_size for p in streams]
    assert all(s.error is None and s.complete for s in got)


def _send(sock: socket.socket, path: Path) -> None:
    with sock:
        sock.sendall(path.read_bytes())
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(1 << 16):  # until the proxy closes (the return path ends)
            pass


@pytest.mark.parametrize("listen_at", ["unix", "tcp:127.0.0.1:0"])
def test_cli_proxy_once(tmp_path: Path, listen_at: str) -> None:
    """One migration through ``miglab proxy --once``; it names where it listens, with the
    port the system picked for port 0, and that is where the source reaches it."""
    import subprocess
    import sys

    path = DATA / "q72-pc-q35-7.2-net.mig"
    listen = parse_address(f"unix:{tmp_path}/in" if listen_at == "unix" else listen_at)
    dest = parse_address(f"unix:{tmp_path}/out")
    with dest.listen() as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "miglab", "proxy", "--once", "--listen", listen.uri,
             "--connect", dest.uri, "--src-qemu", "7.2", "--to-qemu", "7.2",
             "--machine", "pc-q35-7.2"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("listening on ") and f", forwarding to {dest.uri}" in line
            at = parse_address(line.removeprefix("listening on ").partition(",")[0])
            assert (at.kind, at.host, at.path) == (listen.kind, listen.host, listen.path)
            assert at.port > 0 if listen.kind == "tcp" else at == listen
            received = bytearray()
            sink = _drain(server, received)
            feeder = threading.Thread(target=_send, args=(at.connect(), path))
            feeder.start()
            sink.join(30)
            feeder.join(30)
            out, _ = proc.communicate(timeout=60)
        finally:  # a failed assertion must not leave the proxy waiting for a source
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, out
    assert bytes(received) == path.read_bytes()
    size = path.stat().st_size
    assert f"{size} bytes in, {size} out" in out and "0 change(s)" in out


def test_guest_visible_change_stops_the_stream_before_that_device() -> None:
    from miglab.errors import CompatError

    path = DATA / "q100-pc-q35-10.0-net.mig"
    data = path.read_bytes()
    dec = source_decoding("10.0", "pc-q35-10.0")
    sent = bytearray()
    options = dict(src_qemu="10.0", to_qemu="7.2", machine="pc-q35-7.2",
                   schema=dec.schema, descriptions=dec.descriptions)  # fmt: skip
    with pytest.raises(CompatError, match=r"guest-visible change.*e1000e"):
        pump_bytes(data, sent, **options)  # type: ignore[arg-type]
    full, _ = pump_bytes(data, allow_guest_visible=True, **options)  # type: ignore[arg-type]
    # what went out is the allowed conversion cut before the e1000e section's header
    assert 0 < len(sent) < len(full) and full.startswith(bytes(sent))
    assert b"/e1000e" in full and b"/e1000e" not in sent


# --- a peer gone silent -------------------------------------------------------------------
def _proxy_in_thread(
    listen: Address, dest: Address, idle: float
) -> tuple[threading.Thread, list[ProxySummary]]:
    got: list[ProxySummary] = []
    bound = threading.Event()
    thread = threading.Thread(
        target=lambda: got.append(
            proxy_once(listen, dest, src_qemu="7.2", to_qemu="7.2", machine="pc-q35-7.2",
                       ready=lambda _at: bound.set(), accept_timeout=30, idle_timeout=idle)
        )
    )  # fmt: skip
    thread.start()
    assert bound.wait(30)
    return thread, got


def _drain(server: socket.socket, into: bytearray) -> threading.Thread:
    """Accept one connection on ``server`` and collect what comes until it ends."""

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(1 << 20):
                into.extend(chunk)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_source_gone_silent_is_given_up(tmp_path: Path) -> None:
    """A source that stops sending mid-stream, its connection still open (a host lost
    without a word, or a hostile client), fails the migration after ``idle_timeout``:
    both connections closed, the error naming the stream offset where it stopped."""
    data = (DATA / "q72-pc-q35-7.2-net.mig").read_bytes()[:5000]
    listen, dest = parse_address(f"unix:{tmp_path}/in"), parse_address(f"unix:{tmp_path}/out")
    received = bytearray()
    with dest.listen() as server:
        sink = _drain(server, received)
        thread, got = _proxy_in_thread(listen, dest, idle=1.0)
        with listen.connect() as source:
            source.sendall(data)  # then nothing, the socket left open
            source.settimeout(30)
            assert source.recv(1) == b""  # the proxy closed the source's connection
        thread.join(30)
        sink.join(30)
    assert not thread.is_alive() and not sink.is_alive()
    (summary,) = got
    assert not summary.complete and summary.error is not None
    assert "nothing moved for 1 s" in summary.error, summary.error
    assert f"at stream offset {len(data)}" in summary.error, summary.error
    assert summary.bytes_in == len(data)
    assert len(received) <= len(data) and data.startswith(bytes(received))


def test_a_slow_source_that_keeps_sending_is_not_given_up(tmp_path: Path) -> None:
    """The idle bound counts silence, not the migration's length: a stream sent in pieces
    with pauses shorter than ``idle_timeout`` (but longer in all) goes through whole."""
    path = DATA / "q72-pc-q35-7.2-net.mig"
    data = path.read_bytes()
    listen, dest = parse_address(f"unix:{tmp_path}/in"), parse_address(f"unix:{tmp_path}/out")
    received = bytearray()
    pieces = 8
    step = -(-len(data) // pieces)
    with dest.listen() as server:
        sink = _drain(server, received)
        thread, got = _proxy_in_thread(listen, dest, idle=2.0)
        with listen.connect() as source:
            for at in range(0, len(data), step):
                source.sendall(data[at : at + step])
                time.sleep(0.3)  # 8 x 0.3 s in all: longer than the bound, each pause not
            source.shutdown(socket.SHUT_WR)
            source.settimeout(30)
            while source.recv(1 << 16):  # until the proxy closes (the return path ends)
                pass
        thread.join(30)
        sink.join(30)
    (summary,) = got
    assert summary.error is None and summary.complete, summary
    assert bytes(received) == data
