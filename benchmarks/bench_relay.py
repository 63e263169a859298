"""A bare relay between two loopback sockets: what moving the bytes costs, without QEMU.

A sender process writes ``--sizes`` GiB of non-zero bytes to a relay process, which hands
them on to a receiver process, over loopback TCP or unix sockets (``--legs``: the sender's
link / the receiver's, as bench_proxy's routes).  Per mode, the relay's CPU seconds
(user + system, ``getrusage``) per GB, the sender's and receiver's together, and the
throughput; modes alternate within each repeat, so they share the machine's load:

* ``copy``: ``recv_into`` a 4 MiB buffer, then ``sendall`` it -- what
  :class:`miglab.live.inbound.Window` does (two copies through user space);
* ``peek``: ``recv_into(..., MSG_PEEK)`` with ``SO_PEEK_OFF`` (so the bytes are seen, as
  the pump must see them), then ``os.splice`` socket -> pipe -> socket (page references,
  no copy) -- one copy instead of two;
* ``splice``: splice alone, nothing seen -- the floor no relay that parses can reach;
* ``lowat``: ``copy`` with ``SO_RCVLOWAT`` at ``--lowat`` bytes (fewer, larger receives);
* ``pump``: miglab's own pass, a :class:`~miglab.live.pump.Pump` over a
  :class:`~miglab.live.inbound.Window` as ``miglab proxy`` runs it (same build in and out:
  every RAM record framed, every byte forwarded), which needs a real stream: ``--stream``.

With ``--stream PATH`` (a migration stream, say one QEMU wrote with ``migrate file:``) the
sender sends that file, by ``sendfile`` in ``--write`` pieces, instead of ``--sizes`` GiB of
random bytes: set ``pump`` beside ``copy`` on it, and what the proxy costs beyond moving
the bytes is measured without QEMU's noise.  The ``user`` column is the relay's user-space
share of its CPU (the rest is the kernel's copies): what Python's parsing costs.

The relay's ends get ``SO_RCVBUF``/``SO_SNDBUF`` of ``--buffer`` bytes, as the proxy's do
(``miglab.live.proxy.SOCKET_BUFFER``); the sender writes ``--write`` bytes per call (QEMU's
writev of a RAM batch is ~128 KiB).  Every byte count is checked at the receiver.

With ``--serve LISTEN CONNECT`` it is instead one relay between real programs: it listens
on ``LISTEN`` (``tcp:HOST:PORT`` or ``unix:PATH``), prints ``listening on LISTEN``, relays
one connection to ``CONNECT`` in the first of ``--modes`` and exits.  bench_proxy's
``relay`` routes put it between two QEMUs: a relay that parses nothing, so what it costs is
what any process in the stream's path costs.

Usage::

    python benchmarks/bench_relay.py --sizes 1,4 --repeat 3
    python benchmarks/bench_relay.py --legs tcp/unix --modes copy,peek --write 131072
    python benchmarks/bench_relay.py --legs tcp/unix,tcp/tcp --modes pump,copy \
        --stream /var/tmp/1g.mig --repeat 11 --write 131072
    python benchmarks/bench_relay.py --serve tcp:127.0.0.1:4444 unix:/tmp/in.sock --modes splice
"""

from __future__ import annotations

import argparse
import fcntl
import multiprocessing as mp
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from miglab.live.inbound import Window, new_buffer  # noqa: E402
from miglab.live.pump import Pump  # noqa: E402

SO_PEEK_OFF = getattr(socket, "SO_PEEK_OFF", 42)
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
CHUNK = 4 << 20


def _cpu(user: bool = False) -> float:
    """This process's CPU seconds so far: user + system, or (``user``) user alone."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + (0.0 if user else usage.ru_stime)


def _listen(kind: str, path: Path) -> socket.socket:
    if kind == "tcp":
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
    else:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
    s.listen()
    return s


def _connect(kind: str, address: Any) -> socket.socket:
    s = socket.socket(socket.AF_INET if kind == "tcp" else socket.AF_UNIX)
    s.connect(address)
    return s


def _sender(address: Any, kind: str, total: int, args: Any, q: Queue[Any]) -> None:
    """Send ``total`` random bytes, or ``args.stream``'s (then ``total`` is its size)."""
    s = _connect(kind, address)
    write = args.write
    cpu, start, sent = _cpu(), time.monotonic(), 0
    if args.stream:
        with open(args.stream, "rb") as fh:
            while sent < total:
                sent += os.sendfile(s.fileno(), fh.fileno(), sent, min(write, total - sent))
    else:
        data = memoryview(os.urandom(1 << 20) * (CHUNK >> 20))
        while sent < total:
            for at in range(0, CHUNK, write):
                s.sendall(data[at : at + write])
            sent += CHUNK
    s.shutdown(socket.SHUT_WR)
    s.recv(1)  # the relay closes once all is through
    q.put(("sender", _cpu() - cpu, time.monotonic() - start))


def _receiver(lsock: socket.socket, q: Queue[Any]) -> None:
    s, _ = lsock.accept()
    view = memoryview(bytearray(CHUNK))
    cpu, n = _cpu(), 0
    while k := s.recv_into(view, CHUNK):
        n += k
    q.put(("receiver", _cpu() - cpu, n))


def _splice_all(src: int, pipe: tuple[int, int], dst: int, n: int, size: int) -> int:
    """Move up to ``n`` bytes ``src`` -> pipe -> ``dst``; the bytes moved (fewer at EOF)."""
    r, w = pipe
    moved = 0
    while moved < n:
        k = os.splice(src, w, min(n - moved, size))
        if not k:
            break
        moved += k
        while k:
            k -= os.splice(r, dst, k)
    return moved


def _relay(lsock: socket.socket, kind: str, address: Any, mode: str, args: Any,
           q: Queue[Any] | None) -> int:  # fmt: skip
    """Accept one connection on ``lsock`` and relay it to ``address``; the bytes relayed."""
    # The pump's buffer, made before the source connects, as the proxy does.
    buf = new_buffer() if mode == "pump" else None
    src, _ = lsock.accept()
    dst = _connect(kind, address)
    src.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, args.buffer)
    dst.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, args.buffer)
    view = memoryview(bytearray(CHUNK))
    cpu, user, n = _cpu(), _cpu(user=True), 0
    if mode == "pump":
        window = Window(src, dst, buf=buf)
        Pump(window, src_qemu=args.qemu, to_qemu=args.qemu, machine=args.machine).run()
        n = window.bytes_out
    elif mode in ("copy", "lowat"):
        if mode == "lowat":
            src.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, args.lowat)
        while k := src.recv_into(view, CHUNK):
            dst.sendall(view[:k])
            n += k
    else:
        pipe = os.pipe()
        fcntl.fcntl(pipe[1], F_SETPIPE_SZ, args.pipe)
        size = fcntl.fcntl(pipe[1], F_SETPIPE_SZ + 1)  # F_GETPIPE_SZ
        src.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 0)
        while True:
            k = CHUNK
            if mode == "peek" and not (k := src.recv_into(view, CHUNK, socket.MSG_PEEK)):
                break
            k = _splice_all(src.fileno(), pipe, dst.fileno(), k, size)
            if not k:
                break
            n += k
            # TCP's splice leaves the peek offset where it was (unix's moves it back).
            src.setsockopt(socket.SOL_SOCKET, SO_PEEK_OFF, 0)
    if q is not None:
        q.put(("relay", (_cpu() - cpu, _cpu(user=True) - user), n))
    dst.close()
    src.close()
    return n


def _endpoint(address: str) -> tuple[str, Any]:
    """``tcp:HOST:PORT`` or ``unix:PATH`` as a socket kind and a socket address."""
    kind, _, rest = address.partition(":")
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        return kind, (host, int(port))
    if kind == "unix":
        return kind, rest
    raise SystemExit(f"not tcp:HOST:PORT or unix:PATH: {address}")


def serve(listen: str, connect: str, mode: str, args: Any) -> None:
    """Relay one connection from ``listen`` to ``connect`` (``--serve``)."""
    kind, address = _endpoint(listen)
    lsock = socket.socket(socket.AF_INET if kind == "tcp" else socket.AF_UNIX)
    lsock.bind(address)
    lsock.listen()
    print(f"listening on {listen}", flush=True)
    dst_kind, dst_address = _endpoint(connect)
    n = _relay(lsock, dst_kind, dst_address, mode, args, None)
    print(f"relayed {n} bytes", flush=True)


def run(legs: str, mode: str, gib: int, args: Any) -> tuple[float, float, float, float]:
    """One transfer; the relay's CPU s/GB, its user share, the two ends' together, MB/s."""
    src_kind, _, dst_kind = legs.partition("/")
    total = os.path.getsize(args.stream) if args.stream else gib << 30
    q: Queue[Any] = mp.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        lrecv = _listen(dst_kind, Path(tmp) / "recv.sock")
        lrelay = _listen(src_kind, Path(tmp) / "relay.sock")
        procs = [
            mp.Process(target=_receiver, args=(lrecv, q)),
            mp.Process(target=_relay, args=(lrelay, dst_kind, lrecv.getsockname(), mode, args, q)),
            mp.Process(target=_sender, args=(lrelay.getsockname(), src_kind, total, args, q)),
        ]  # fmt: skip
        for p in procs:
            p.start()
        got = dict((name, (cpu, x)) for name, cpu, x in (q.get() for _ in procs))
        for p in procs:
            p.join()
        lrecv.close()
        lrelay.close()
    if not got["receiver"][1] == got["relay"][1] == total:
        raise RuntimeError(f"bytes lost: {got}")
    gb = total / 1e9
    ends = (got["sender"][0] + got["receiver"][0]) / gb
    relay, user = got["relay"][0]
    return relay / gb, user / gb, ends, total / got["sender"][1] / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,4", help="GiB per transfer (comma-separated)")
    ap.add_argument("--legs", default="tcp/tcp,tcp/unix,unix/unix")
    ap.add_argument("--modes", default="copy,peek,splice")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--buffer", type=int, default=4 << 20, help="relay's socket buffers")
    ap.add_argument("--pipe", type=int, default=1 << 20, help="pipe size (peek, splice)")
    ap.add_argument("--lowat", type=int, default=1 << 20, help="SO_RCVLOWAT (lowat)")
    ap.add_argument("--write", type=int, default=CHUNK, help="bytes per send of the sender")
    ap.add_argument("--stream", help="send this migration stream instead (needed by pump)")
    ap.add_argument("--qemu", default="10.0", help="the stream's QEMU build (pump)")
    ap.add_argument("--machine", default="pc-q35-10.0", help="the stream's machine (pump)")
    ap.add_argument("--serve", nargs=2, metavar=("LISTEN", "CONNECT"),
                    help="relay one connection between real programs instead")  # fmt: skip
    args = ap.parse_args()
    if "pump" in args.modes.split(",") and not (args.stream or args.serve):
        ap.error("the pump mode needs a real stream: --stream PATH")
    if args.serve:
        listen, connect = args.serve
        serve(listen, connect, args.modes.split(",")[0], args)
        return
    print(f"buffer {args.buffer}, pipe {args.pipe}, lowat {args.lowat}, write {args.write}, "
          f"stream {args.stream or 'random bytes'}; medians of {args.repeat}")  # fmt: skip
    print(f"{'legs':9} {'GiB':>3} {'mode':7} {'relay s/GB':>10} {'user':>6} {'ends s/GB':>10}"
          f" {'MB/s':>6}   (relay s/GB of each run)")  # fmt: skip
    sizes = ["-"] if args.stream else args.sizes.split(",")
    for legs in args.legs.split(","):
        for size in sizes:
            gib = 0 if args.stream else int(size)
            modes = args.modes.split(",")
            runs: dict[str, list[tuple[float, float, float, float]]] = {m: [] for m in modes}
            for _ in range(args.repeat):
                for mode in modes:
                    runs[mode].append(run(legs, mode, gib, args))
            for mode in modes:
                r = runs[mode]
                med = [statistics.median(x[i] for x in r) for i in range(4)]
                each = " ".join(f"{x[0]:.3f}" for x in r)
                print(f"{legs:9} {size:>3} {mode:7} {med[0]:10.3f} {med[1]:6.3f} {med[2]:10.3f}"
                      f" {med[3]:6.0f}   ({each})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
