"""``miglab proxy``: stand between a source QEMU's outgoing migration and a destination's ``-incoming``.

:func:`proxy_once` listens where the source will ``migrate`` to, connects to the
destination when the source connects, and pumps the stream through
:class:`~miglab.live.pump.Pump` (converted for the destination's QEMU and machine, RAM
passed through); bytes the destination sends back (QEMU's return path) are copied to the
source verbatim.  :func:`serve` does that for one migration after another.

Failure is clean by construction: when anything goes wrong -- the source's stream is cut
or garbled, the conversion is refused, the destination goes away, or nothing moves either
way for ``idle_timeout`` seconds (a source or destination gone silent, say a host lost
without a word, would otherwise hold the proxy forever) -- both connections are
closed at once.  The destination then fails its incoming migration (its stream ended
early) and the source's migration fails on the closed socket, so the source VM keeps
running (QEMU resumes the source after a failed migration).  :class:`ProxySummary` says
what happened, with the error text.

Example (in a thread, so the caller can start the source's ``migrate`` once bound)::

    summary = proxy_once(parse_address("tcp:127.0.0.1:4444"),
                         parse_address("tcp:127.0.0.1:4445"),
                         src_qemu="10.0", to_qemu="7.2", machine="pc-q35-7.2",
                         ready=lambda at: print("listening on", at))
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from miglab.compat.report import ChangeReport
from miglab.errors import LiveError, MiglabError
from miglab.live.address import Address
from miglab.live.decoding import SourceDecoding, source_decoding
from miglab.live.inbound import Window, new_buffer
from miglab.live.pump import Pump, PumpResult

__all__ = ("ProxySummary", "proxy_once", "serve")

#: Bytes asked for the receive buffer of the source's connection and the send buffer of
#: the destination's (the kernel doubles them for its bookkeeping, and caps the request at
#: ``net.core.rmem_max`` / ``wmem_max``): what the proxy adds to the bytes in flight, so to
#: the downtime, stays ~16 MiB (~20 ms at 800 MB/s), not the tens of MiB loopback
#: autotuning grows to.  The proxy receives and sends in turn, so the buffers are what lets
#: the source and the destination run meanwhile: 512 KiB halved its throughput in
#: bench_proxy, and 4 MiB against 2 MiB cut its CPU from 0.77-0.84 to 0.47-0.67 s/GB (fewer
#: wake-ups per GB; the same downtime within the noise).
SOCKET_BUFFER = 4 << 20
#: Seconds the return-path copy may take to finish after the stream was sent.
RETURN_PATH_GRACE = 5.0
#: Seconds with no byte from the source and none taken by the destination after which a
#: migration is given up (the default of ``idle_timeout``).  A running source never stops
#: sending (each RAM pass follows the last, and QEMU's rate limit spreads them, never
#: halts them); the exception is a source paused before switchover
#: (``pause-before-switchover``, waiting for ``migrate-continue``), so the bound is long.
IDLE_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class ProxySummary:
    """One migration through the proxy.

    Attributes:
        bytes_in: bytes received from the source.
        bytes_out: bytes sent to the destination.
        passes: RAM passes seen on the wire (the page addresses started over).
        changes: the conversion's change report (empty for the same QEMU and machine;
            ``changes.options`` are destination options the conversion needs).
        seconds: from the source's connection to the end of the stream.
        error: None, or what went wrong (the proxy's or the socket's error text).
        pages: RAM page records forwarded.
        device_sections: device sections seen; ``decoded`` of them were decoded.
        complete: the whole stream (up to QEMU_VM_EOF and its vmdesc) went through.
    """

    bytes_in: int
    bytes_out: int
    passes: int
    changes: ChangeReport
    seconds: float
    error: str | None = None
    pages: int = 0
    device_sections: int = 0
    decoded: int = 0
    complete: bool = False

    def __str__(self) -> str:
        rate = self.bytes_in / self.seconds / 1e6 if self.seconds > 0 else 0.0
        head = (
            f"{self.bytes_in} bytes in, {self.bytes_out} out, {self.passes} RAM pass(es), "
            f"{self.pages} pages, {self.decoded}/{self.device_sections} device sections decoded, "
            f"{len(self.changes)} change(s), {self.seconds:.3f} s ({rate:.0f} MB/s)"
        )
        return head if self.error is None else f"{head}; FAILED: {self.error}"


def proxy_once(
    listen: Address,
    connect: Address,
    *,
    src_qemu: str,
    to_qemu: str,
    machine: str,
    allow_guest_visible: bool = False,
    ready: Callable[[Address], None] | None = None,
    decoding: SourceDecoding | None = None,
    accept_timeout: float | None = None,
    connect_timeout: float = 30.0,
    idle_timeout: float | None = IDLE_TIMEOUT,
) -> ProxySummary:
    """Proxy one migration; return its summary (errors are in it, not raised).

    Args:
        listen: where the source QEMU migrates to.
        connect: the destination QEMU's ``-incoming`` (or ``migrate-incoming``) address.
        src_qemu: the source's QEMU version (whose format the stream is in).
        to_qemu: the destination's QEMU version.
        machine: the destination's machine type.
        allow_guest_visible: accept changes the guest could observe.
        ready: called once the listening socket is bound (then start the source's migrate),
            with the address it is bound to: ``listen`` with the port the system picked
            when that was 0.
        decoding: the source build's descriptions (default: :func:`source_decoding`).
        accept_timeout: seconds to wait for the source (None: forever).
        connect_timeout: seconds to wait for the destination to accept.
        idle_timeout: seconds with nothing received from the source and nothing taken by
            the destination after which the migration fails (None: wait forever).

    Raises:
        LiveError: the listening address cannot be bound, or no source came in time.
    """
    # Parsed and made before the source comes: a migration should not wait for them.
    decoding = decoding or _default_decoding(src_qemu, to_qemu, machine)
    buffer = new_buffer()
    with contextlib.closing(listen.listen()) as lsock:
        if ready is not None:
            ready(listen.bound(lsock))
        lsock.settimeout(accept_timeout)
        try:
            src, _ = lsock.accept()
        except TimeoutError:
            raise LiveError(
                f"no source connected to {listen} within {accept_timeout:g} s"
            ) from None
    return _one(src, connect, src_qemu, to_qemu, machine, allow_guest_visible, decoding,
                connect_timeout, idle_timeout, buffer)  # fmt: skip


def serve(
    listen: Address,
    connect: Address,
    *,
    src_qemu: str,
    to_qemu: str,
    machine: str,
    allow_guest_visible: bool = False,
    ready: Callable[[Address], None] | None = None,
    decoding: SourceDecoding | None = None,
    connect_timeout: float = 30.0,
    idle_timeout: float | None = IDLE_TIMEOUT,
) -> Iterator[ProxySummary]:
    """Proxy migrations one after another, yielding each one's summary (until closed).

    The arguments are :func:`proxy_once`'s.
    """
    decoding = decoding or _default_decoding(src_qemu, to_qemu, machine)
    buffer = new_buffer()  # one for every migration: they come one at a time
    with contextlib.closing(listen.listen(backlog=4)) as lsock:
        if ready is not None:
            ready(listen.bound(lsock))
        while True:
            src, _ = lsock.accept()
            yield _one(src, connect, src_qemu, to_qemu, machine, allow_guest_visible,
                       decoding, connect_timeout, idle_timeout, buffer)  # fmt: skip


def _default_decoding(src_qemu: str, to_qemu: str, machine: str) -> SourceDecoding | None:
    """The source build's descriptions when a conversion may need them, else None."""
    return source_decoding(src_qemu, machine) if src_qemu != to_qemu else None


def _one(
    src: socket.socket,
    connect: Address,
    src_qemu: str,
    to_qemu: str,
    machine: str,
    allow_guest_visible: bool,
    decoding: SourceDecoding | None,
    connect_timeout: float,
    idle_timeout: float | None,
    buffer: bytearray,
) -> ProxySummary:
    start = time.monotonic()
    error: str | None = None
    window: Window | None = None
    pump: Pump | None = None
    back: threading.Thread | None = None
    dst: socket.socket | None = None
    watchdog: _Watchdog | None = None
    try:
        if decoding is None:
            decoding = _default_decoding(src_qemu, to_qemu, machine)
        dst = connect.connect(connect_timeout)
        _bound_buffers(src, dst)
        window = Window(src, dst, buf=buffer)
        if idle_timeout is not None:
            watchdog = _Watchdog(window, idle_timeout)
        back = threading.Thread(target=_copy_back, args=(dst, src), daemon=True)
        back.start()
        pump = Pump(
            window,
            src_qemu=src_qemu,
            to_qemu=to_qemu,
            machine=machine,
            allow_guest_visible=allow_guest_visible,
            schema=decoding.schema if decoding else None,
            descriptions=decoding.descriptions if decoding else None,
        )
        pump.run()
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)  # the destination sees the end of its stream
        back.join(RETURN_PATH_GRACE)
    except (MiglabError, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if watchdog is not None and (idle := watchdog.stop()) is not None:
            error = f"LiveError: {idle}"  # the cause, not what the closed sockets said
        # Close both at once on error: the destination fails, the source resumes its VM.
        for sock in (dst, src):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        if back is not None:
            back.join(RETURN_PATH_GRACE)
    seconds = time.monotonic() - start
    result = pump.result if pump is not None else PumpResult()
    if pump is not None and pump.conversion is not None:  # also what was changed before a failure
        result.report = pump.conversion.report()
    return ProxySummary(
        bytes_in=window.bytes_in if window else 0,
        bytes_out=window.bytes_out if window else 0,
        passes=result.passes,
        changes=result.report,
        seconds=seconds,
        error=error,
        pages=result.pages,
        device_sections=result.device_sections,
        decoded=result.decoded,
        complete=result.complete and error is None,
    )


def _bound_buffers(src: socket.socket, dst: socket.socket) -> None:
    """Fix the kernel buffers of the proxy's own ends at :data:`SOCKET_BUFFER`.

    Left to autotuning, loopback buffers grow to many MiB; when the destination is the
    slower end they all fill, and every byte queued in them at the source's stop must still
    reach the destination before the guest runs again: downtime the proxy would add.
    On TCP, Nagle's algorithm is off for the destination: the pump sends each rewritten
    device record by itself while the guest is stopped, and a small send held back for the
    destination's delayed ACK waited ~40 ms in 7 of 60 loopback trials, none without it
    (``benchmarks/results/s7-downtime.txt``).
    """
    with contextlib.suppress(OSError):  # not every socket kind takes them
        src.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        dst.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
    if dst.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            dst.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Watchdog:
    """Closes both of a migration's connections when nothing has moved for ``seconds``.

    Nothing moved: the source sent no byte and the destination took none (``Window``'s
    counters stayed put).  A thread polls the counters, so the pump's receives and sends
    stay plain blocking calls: a socket timeout would cost a ``poll`` before each one.
    Shutting the sockets down wakes the pump wherever it blocks.
    """

    def __init__(self, window: Window, seconds: float) -> None:
        self._window, self._seconds = window, seconds
        self._done = threading.Event()
        self._fired: str | None = None
        self._thread = threading.Thread(target=self._watch, name="miglab-idle", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        w = self._window
        seen, since = (w.bytes_in, w.bytes_out), time.monotonic()
        while not self._done.wait(min(1.0, self._seconds / 4)):
            now = (w.bytes_in, w.bytes_out)
            if now != seen:
                seen, since = now, time.monotonic()
            elif time.monotonic() - since >= self._seconds:
                self._fired = (
                    f"nothing moved for {self._seconds:g} s (no byte from the source, none "
                    f"taken by the destination) at stream offset {w.bytes_in}"
                )
                for sock in (w.sock, w.out):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return

    def stop(self) -> str | None:
        """Stop watching; why it closed the connections, or None if it did not."""
        self._done.set()
        self._thread.join()
        return self._fired


def _copy_back(dst: socket.socket, src: socket.socket) -> None:
    """Copy the destination's return path to the source until either side closes."""
    with contextlib.suppress(OSError):
        while data := dst.recv(1 << 16):
            src.sendall(data)
