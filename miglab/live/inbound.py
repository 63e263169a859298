"""The source's bytes as they arrive: bounded receive buffers over a socket, forwarded by ranges.

:class:`Window` holds what has been received and not yet forwarded or consumed.  The pump
parses records at the front of it and either forwards a range verbatim
(:meth:`Window.forward`) or drops it and writes something else in its place
(:meth:`Window.send`).  Nothing is copied on the way: a forwarded range is a view of the
receive buffer, sent by a second thread (the sender) while the pump receives and parses
the next bytes, so receiving and sending overlap (both release the GIL).

Memory and backpressure: the bytes live in a pool of ``depth`` buffers of two receive
chunks each.  A buffer goes back to the pool only when the sender has sent everything
forwarded from it, and the pump waits for a free buffer; so a slow destination stalls
the pump, then the source (QEMU's own rate control sees it).  A record longer than a
buffer gets a buffer of its own, bounded by :data:`~miglab.limits.LIMITS` (a RAM page
record is a few KiB; device sections are bounded by ``max_section_bytes``).
"""

from __future__ import annotations

import queue
import socket
import threading

from miglab.errors import LimitExceeded, TruncatedStreamError
from miglab.limits import LIMITS

__all__ = ("CHUNK", "DEPTH", "Window")

#: Bytes asked of the socket per receive.
CHUNK = 1 << 20
#: Receive buffers in the pool (each two chunks): what may be in the proxy at once.
DEPTH = 3


class _Release:
    """Queued after the last range forwarded from ``buf``: the sender frees it then."""

    __slots__ = ("buf",)

    def __init__(self, buf: bytearray) -> None:
        self.buf = buf


class Window:
    """Received bytes not yet handed on; ``offset`` is the stream offset of ``buf[pos]``.

    Args:
        sock: the source's connection.
        out: the destination's connection (the sender writes to it).
        chunk: bytes per receive.
        depth: receive buffers in the pool.

    Call :meth:`flush` once the stream is through (it waits for the sender and raises
    what the sender met), and :meth:`close` in any case.
    """

    def __init__(
        self, sock: socket.socket, out: socket.socket, chunk: int = CHUNK, depth: int = DEPTH
    ) -> None:
        self.sock = sock
        self.out = out
        self.chunk = chunk
        self._size = 2 * chunk
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        for _ in range(depth - 1):
            self._free.put(bytearray(self._size))
        #: Received bytes live in ``buf[pos:end]``; the buffer is received into in place.
        self.buf = bytearray(self._size)
        self.pos = 0
        self.end = 0
        self.offset = 0
        self.closed = False  # the source closed its side
        self.bytes_in = 0
        self.bytes_out = 0
        self._error: OSError | None = None
        self._queue: queue.SimpleQueue[memoryview | bytes | _Release | None] = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_all, name="miglab-send", daemon=True)
        self._sender.start()

    @property
    def available(self) -> int:
        """Bytes received and not yet consumed."""
        return self.end - self.pos

    def receive(self) -> bool:
        """Receive once more (blocking, into the buffer); False when the source has closed.

        Raises:
            OSError: the sender failed (the destination went away).
        """
        if self.closed:
            return False
        self._check()
        if len(self.buf) - self.end < self.chunk:
            self._next_buffer(self.available + self.chunk)
        n = self.sock.recv_into(memoryview(self.buf)[self.end :], self.chunk)
        if not n:
            self.closed = True
            return False
        self.end += n
        self.bytes_in += n
        return True

    def _next_buffer(self, room: int) -> None:
        """Go on in another buffer with ``room`` bytes, the unconsumed bytes moved to its front."""
        old, left = self.buf, self.available
        # From the pool, waiting while the sender is behind (backpressure); a long record
        # gets a buffer of its own (doubling), dropped once sent.
        new = self._free.get() if room <= self._size else bytearray(max(room, 2 * len(old)))
        new[:left] = memoryview(old)[self.pos : self.end]
        self.buf, self.pos, self.end = new, 0, left
        self._queue.put(_Release(old))

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
        """Queue the next ``n`` available bytes for the destination verbatim; consume them."""
        if n:
            self._check()
            self._queue.put(memoryview(self.buf)[self.pos : self.pos + n])
            self.consume(n)

    def send(self, data: bytes) -> None:
        """Queue bytes of miglab's own for the destination."""
        if data:
            self._check()
            self._queue.put(bytes(data))

    def flush(self) -> None:
        """Wait until everything queued was sent.

        Raises:
            OSError: sending to the destination failed.
        """
        self.close()
        self._check()

    def close(self) -> None:
        """Stop the sender once it has worked through the queue (idempotent)."""
        if self._sender.is_alive():
            self._queue.put(None)
            self._sender.join()

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def _send_all(self) -> None:
        """The sender: send queued bytes in order; after an error, only free buffers."""
        while (item := self._queue.get()) is not None:
            if isinstance(item, _Release):  # a long record's buffer gives way to a new one
                self._free.put(item.buf if len(item.buf) == self._size else bytearray(self._size))
                continue
            if self._error is None:
                try:
                    self.out.sendall(item)
                    self.bytes_out += len(item)
                except OSError as exc:
                    self._error = exc
            if isinstance(item, memoryview):
                item.release()
