"""The source's bytes as they arrive: a bounded window over a socket, forwarded by ranges.

:class:`Window` holds what has been received and not yet forwarded or consumed.  The pump
parses records at the front of it and either forwards a range verbatim
(:meth:`Window.forward`, straight from the buffer to the destination socket) or drops it
and writes something else in its place.  Writes block while the destination does not
read, so a slow destination slows the source down (QEMU's own rate control sees it), and
the window never grows beyond two receive chunks plus the record being read, whose size is
bounded by :data:`~miglab.limits.LIMITS` (a RAM page record is a few KiB; device sections
are bounded by ``max_section_bytes``).
"""

from __future__ import annotations

import socket

from miglab.errors import LimitExceeded, TruncatedStreamError
from miglab.limits import LIMITS

__all__ = ("CHUNK", "Window", "new_buffer")

#: Bytes asked of the socket per receive: as much as the proxy's receive buffer
#: (``proxy.SOCKET_BUFFER``) holds, so one receive takes what has queued, with fewer
#: wake-ups and passes of the pump's RAM loop.  A bare recv/send relay of a 1 GiB stream
#: over loopback went from 0.72-0.89 CPU s/GB at 1 MiB to 0.48-0.57 at 4 MiB; between live
#: QEMUs (bench_proxy) the two were alike within the noise of a loaded machine
#: (``benchmarks/results/s6-proxy.txt``).
CHUNK = 4 << 20

#: Bytes left unconsumed that :meth:`Window.receive` moves to the front of the buffer
#: before every receive, not only when the room runs out.  In the RAM loop that is less
#: than one page record, so each receive lands at the front, in memory the last send has
#: just read (still in the cache), instead of cycling through the whole 8 MiB.  Measured
#: on a captured 1 GiB stream through the proxy, medians of 11 and 15 rounds: 0.360 and
#: 0.329 CPU s/GB against 0.392 and 0.382 without (``benchmarks/results/s8-proxy.txt``).
_SMALL = 64 << 10


def new_buffer(chunk: int = CHUNK) -> bytearray:
    """A :class:`Window`'s buffer, to make before the source connects.

    Allocating (so zeroing) its 8 MiB took 3-37 ms here (the more, the busier the
    machine): made when the source connects, that is in the way of its first bytes at the
    start of every migration (what that gives a 1 GiB migration is within bench_proxy's
    noise).
    """
    return bytearray(2 * chunk)


class Window:
    """Received bytes not yet handed on; ``offset`` is the stream offset of ``buf[pos]``.

    Args:
        sock: the source's connection.
        out: the destination's connection (``forward`` writes to it).
        chunk: bytes per receive.
        buf: the buffer to receive into (:func:`new_buffer`; default: a new one); it may
            be grown for a long record, and reused for the next migration.
    """

    def __init__(
        self,
        sock: socket.socket,
        out: socket.socket,
        chunk: int = CHUNK,
        buf: bytearray | None = None,
    ) -> None:
        self.sock = sock
        self.out = out
        self.chunk = chunk
        #: Received bytes live in ``buf[pos:end]``; the buffer is received into in place.
        self.buf = new_buffer(chunk) if buf is None else buf
        self.pos = 0
        self.end = 0
        self.offset = 0
        self.closed = False  # the source closed its side
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def available(self) -> int:
        """Bytes received and not yet consumed."""
        return self.end - self.pos

    def receive(self) -> bool:
        """Receive once more (blocking, into the buffer); False when the source has closed."""
        if self.closed:
            return False
        buf = self.buf
        left = self.end - self.pos
        if self.pos and (left <= _SMALL or len(buf) - self.end < self.chunk):
            buf[:left] = buf[self.pos : self.end]  # move what is left to the front
            self.pos, self.end = 0, left
        if len(buf) - self.end < self.chunk:  # a long record: room for one more chunk
            buf.extend(bytes(self.end + self.chunk - len(buf)))
        n = self.sock.recv_into(memoryview(buf)[self.end :], self.chunk)
        if not n:
            self.closed = True
            return False
        self.end += n
        self.bytes_in += n
        return True

    def need(self, n: int, what: str) -> None:
        """Make ``n`` bytes available, receiving as needed.

        Raises:
            TruncatedStreamError: the source closed first.
            LimitExceeded: ``n`` is more than any record may be.
        """
        if n > LIMITS.max_section_bytes:
            raise LimitExceeded(
                f"{what} of {n} bytes exceeds max_section_bytes", offset=self.offset
            )
        while self.available < n:
            if not self.receive():
                raise TruncatedStreamError(
                    f"the source closed the stream inside {what}",
                    offset=self.offset + self.available,
                )

    def peek(self, n: int) -> bytes:
        """The next ``n`` bytes (they must be available)."""
        return bytes(self.buf[self.pos : self.pos + n])

    def take(self, n: int) -> bytes:
        """Consume ``n`` available bytes and return them."""
        data = bytes(self.buf[self.pos : self.pos + n])
        self.consume(n)
        return data

    def consume(self, n: int) -> None:
        """Drop ``n`` available bytes without forwarding them."""
        self.pos += n
        self.offset += n

    def forward(self, n: int) -> None:
        """Send the next ``n`` available bytes to the destination verbatim and consume them."""
        if n:
            self.out.sendall(memoryview(self.buf)[self.pos : self.pos + n])
            self.bytes_out += n
            self.consume(n)

    def send(self, data: bytes) -> None:
        """Send bytes of miglab's own to the destination."""
        if data:
            self.out.sendall(data)
            self.bytes_out += len(data)
