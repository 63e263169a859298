"""QEMUFile: a positioned byte stream, and QEMU's legacy ``qemu_put/get_*`` API on it.

QEMU devices that predate visitors read and write their state with
``qemu_put_be32(f, x)`` / ``qemu_get_be32(f)`` on a ``QEMUFile``.  miglab
keeps that API (so a legacy handler can be ported line by line) on two
small classes:

* :class:`QEMUFileReader` reads from a buffer (``bytes``, ``memoryview`` or
  an ``mmap``) without copying it; every read is checked against what
  remains, and a short read raises :class:`~miglab.errors.TruncatedStreamError`
  with the offset.
* :class:`QEMUFileWriter` appends to an in-memory buffer or streams to a
  binary file, tracking the offset it has reached.

All integers are big-endian, as on QEMU's wire.
"""

from __future__ import annotations

import struct

from miglab.errors import MigrationFormatError, TruncatedStreamError

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import BinaryIO

__all__ = (
    "QEMUFile",
    "QEMUFileReader",
    "QEMUFileWriter",
    "qemu_get_be8",
    "qemu_get_be16",
    "qemu_get_be32",
    "qemu_get_be64",
    "qemu_get_buffer",
    "qemu_get_counted_string",
    "qemu_put_be8",
    "qemu_put_be16",
    "qemu_put_be32",
    "qemu_put_be64",
    "qemu_put_buffer",
    "qemu_put_counted_string",
)

_BE16 = struct.Struct(">H")
_BE32 = struct.Struct(">I")
_BE64 = struct.Struct(">Q")

Buffer = bytes | bytearray | memoryview


class QEMUFileReader:
    """Reads big-endian values from a buffer, never past its end.

    Args:
        data: the whole input; kept by reference (an ``mmap`` stays mapped).
        offset: where reading starts.
        end: one past the last readable byte (default: end of ``data``).
    """

    __slots__ = ("__weakref__", "_end", "_view", "_visitor", "pos")
    _visitor: object  # the visitor made on this file (see visitor_for)

    def __init__(self, data: Buffer, offset: int = 0, end: int | None = None) -> None:
        self._view = data if isinstance(data, memoryview) else memoryview(data)
        if self._view.ndim != 1 or self._view.itemsize != 1:
            self._view = self._view.cast("B")
        self.pos = offset
        self._end = len(self._view) if end is None else end

    @property
    def view(self) -> memoryview:
        """The whole underlying buffer (offsets are relative to its start)."""
        return self._view

    @property
    def end(self) -> int:
        """One past the last byte this reader may read."""
        return self._end

    def remaining(self) -> int:
        """How many bytes are left before :attr:`end`."""
        return self._end - self.pos

    def at_end(self) -> bool:
        """True when every byte has been read."""
        return self.pos >= self._end

    def need(self, n: int, what: str) -> None:
        """Raise :class:`TruncatedStreamError` unless ``n`` more bytes remain."""
        if n < 0:
            raise MigrationFormatError(f"negative length {n} for {what}", offset=self.pos)
        if self.pos + n > self._end:
            raise TruncatedStreamError(
                f"stream ends after {self._end - self.pos} of the {n} bytes of {what}",
                offset=self.pos,
            )

    def u8(self, what: str = "a byte") -> int:
        """Read one unsigned byte."""
        if self.pos >= self._end:
            raise TruncatedStreamError(f"stream ends where {what} was expected", offset=self.pos)
        value = self._view[self.pos]
        self.pos += 1
        return value

    def peek_u8(self) -> int | None:
        """The next byte without consuming it, or None at the end."""
        return self._view[self.pos] if self.pos < self._end else None

    def be16(self, what: str = "a be16") -> int:
        """Read an unsigned big-endian 16-bit integer."""
        self.need(2, what)
        (value,) = _BE16.unpack_from(self._view, self.pos)
        self.pos += 2
        return value

    def be32(self, what: str = "a be32") -> int:
        """Read an unsigned big-endian 32-bit integer."""
        self.need(4, what)
        (value,) = _BE32.unpack_from(self._view, self.pos)
        self.pos += 4
        return value

    def be64(self, what: str = "a be64") -> int:
        """Read an unsigned big-endian 64-bit integer."""
        self.need(8, what)
        (value,) = _BE64.unpack_from(self._view, self.pos)
        self.pos += 8
        return value

    def unpack(self, fmt: struct.Struct, what: str) -> tuple:
        """Read ``fmt.size`` bytes and unpack them with a precompiled struct."""
        self.need(fmt.size, what)
        values = fmt.unpack_from(self._view, self.pos)
        self.pos += fmt.size
        return values

    def view_bytes(self, n: int, what: str = "bytes") -> memoryview:
        """Return the next ``n`` bytes as a zero-copy view and move past them."""
        self.need(n, what)
        start = self.pos
        self.pos += n
        return self._view[start : self.pos]

    def read_bytes(self, n: int, what: str = "bytes") -> bytes:
        """Return a copy of the next ``n`` bytes (for small values)."""
        return bytes(self.view_bytes(n, what))

    def counted_string(self, what: str = "a counted string") -> bytes:
        """Read QEMU's counted string: one length byte, then that many bytes."""
        n = self.u8(what)
        return self.read_bytes(n, what)


class QEMUFileWriter:
    """Appends big-endian values to memory or streams them to a binary file.

    Args:
        sink: a writable binary file; when None, bytes are kept in memory and
            returned by :meth:`getvalue`.
        offset: the offset of the first byte written (for error messages and
            vmdesc sizes when writing nested payloads).
    """

    __slots__ = ("__weakref__", "_buf", "_flushed", "_sink", "_visitor")
    _visitor: object  # the visitor made on this file (see visitor_for)

    _FLUSH_AT = 1 << 20

    def __init__(self, sink: BinaryIO | None = None, offset: int = 0) -> None:
        self._sink = sink
        self._buf = bytearray()
        self._flushed = offset

    @property
    def pos(self) -> int:
        """Bytes written so far (plus the starting offset)."""
        return self._flushed + len(self._buf)

    def u8(self, value: int) -> None:
        """Write one byte."""
        self._buf.append(value)

    def be16(self, value: int) -> None:
        """Write an unsigned big-endian 16-bit integer."""
        self._buf += _BE16.pack(value)

    def be32(self, value: int) -> None:
        """Write an unsigned big-endian 32-bit integer."""
        self._buf += _BE32.pack(value)

    def be64(self, value: int) -> None:
        """Write an unsigned big-endian 64-bit integer."""
        self._buf += _BE64.pack(value)

    def write(self, data: Buffer) -> None:
        """Write raw bytes; large buffers go straight to the sink unbuffered."""
        if self._sink is not None and len(data) >= self._FLUSH_AT:
            self.flush()
            self._sink.write(data)
            self._flushed += len(data)
            return
        self._buf += data
        if self._sink is not None and len(self._buf) >= self._FLUSH_AT:
            self.flush()

    def counted_string(self, value: bytes) -> None:
        """Write QEMU's counted string (length byte, then the bytes)."""
        if len(value) > 255:
            raise MigrationFormatError(f"counted string of {len(value)} bytes exceeds 255")
        self._buf.append(len(value))
        self._buf += value

    def flush(self) -> None:
        """Push buffered bytes to the sink (no-op for in-memory writers)."""
        if self._sink is not None and self._buf:
            self._sink.write(self._buf)
            self._flushed += len(self._buf)
            self._buf = bytearray()

    def getvalue(self) -> bytes:
        """All bytes written, for an in-memory writer."""
        if self._sink is not None:
            raise TypeError("getvalue() is only for in-memory writers")
        return bytes(self._buf)


QEMUFile = QEMUFileReader | QEMUFileWriter


# The legacy API, named as in QEMU's migration/qemu-file.h.
def qemu_put_be8(f: QEMUFileWriter, v: int) -> None:
    """Write one byte (QEMU's ``qemu_put_byte``)."""
    f.u8(v & 0xFF)


def qemu_put_be16(f: QEMUFileWriter, v: int) -> None:
    """Write a big-endian 16-bit value (``qemu_put_be16``)."""
    f.be16(v & 0xFFFF)


def qemu_put_be32(f: QEMUFileWriter, v: int) -> None:
    """Write a big-endian 32-bit value (``qemu_put_be32``)."""
    f.be32(v & 0xFFFFFFFF)


def qemu_put_be64(f: QEMUFileWriter, v: int) -> None:
    """Write a big-endian 64-bit value (``qemu_put_be64``)."""
    f.be64(v & 0xFFFFFFFFFFFFFFFF)


def qemu_put_buffer(f: QEMUFileWriter, data: Buffer) -> None:
    """Write raw bytes (``qemu_put_buffer``)."""
    f.write(data)


def qemu_put_counted_string(f: QEMUFileWriter, s: bytes) -> None:
    """Write a length byte and the string (``qemu_put_counted_string``)."""
    f.counted_string(s)


def qemu_get_be8(f: QEMUFileReader) -> int:
    """Read one byte (``qemu_get_byte``)."""
    return f.u8()


def qemu_get_be16(f: QEMUFileReader) -> int:
    """Read a big-endian 16-bit value (``qemu_get_be16``)."""
    return f.be16()


def qemu_get_be32(f: QEMUFileReader) -> int:
    """Read a big-endian 32-bit value (``qemu_get_be32``)."""
    return f.be32()


def qemu_get_be64(f: QEMUFileReader) -> int:
    """Read a big-endian 64-bit value (``qemu_get_be64``)."""
    return f.be64()


def qemu_get_buffer(f: QEMUFileReader, size: int) -> bytes:
    """Read ``size`` raw bytes (``qemu_get_buffer``)."""
    return f.read_bytes(size)


def qemu_get_counted_string(f: QEMUFileReader) -> bytes:
    """Read a length byte and the string (``qemu_get_counted_string``)."""
    return f.counted_string()
