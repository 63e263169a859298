"""libvirt save images (``virsh save``, managedsave, external snapshot memory).

libvirt's ``src/qemu/qemu_saveimage.{c,h}`` write, in host byte order (x86:
little-endian), a 92-byte ``virQEMUSaveHeader``::

    char magic[16]      "LibvirtQemudSave", or "LibvirtQemudPart" while the save runs
    u32 version         2 (1: no compression field)
    u32 data_len        bytes of XML + cookie + zero padding that follow
    u32 was_running     whether the domain was running (restore resumes it)
    u32 format          0 raw, 1 gzip, 2 bzip2, 3 xz, 4 lzop, 5 zstd, 6 sparse
    u32 cookieOffset    where the cookie XML starts inside the data (0: none)
    u32 unused[14]

then ``data_len`` bytes: the domain XML and the cookie, each NUL-terminated,
then zeros (libvirt leaves 64 KiB so the XML can be edited in place), and at
``92 + data_len`` the QEMU stream: as is (raw), piped through the format's
program (see :mod:`miglab.containers.compressed`), or for ``sparse`` a
mapped-ram stream whose file offsets count from the start of this file.

The XML and cookie are exposed as text (``stream.container.xml``); writing
back an unedited image is byte-exact, an edited XML is written with a
``data_len`` that holds it (grown by libvirt's 64 KiB when it no longer fits).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import IO, TYPE_CHECKING, Any

from miglab.containers import compressed, mapped_ram
from miglab.errors import MigrationFormatError, TruncatedStreamError

if TYPE_CHECKING:
    from miglab.stream.model import Stream

__all__ = ("HEADER_SIZE", "LibvirtSave", "SaveFormat", "sniff")

MAGIC = b"LibvirtQemudSave"
MAGIC_PARTIAL = b"LibvirtQemudPart"
HEADER_SIZE = 92
_VERSION = 2
_PAD = 64 * 1024  # virQEMUSaveDataWrite: room to edit the XML in place
_FIELDS = struct.Struct("5I")  # version, data_len, was_running, format, cookieOffset
_UNUSED = HEADER_SIZE - 16 - _FIELDS.size
_MACHINE = re.compile(r"""(<type\b[^>]*\bmachine=['"])([^'"]*)(['"])""")


class SaveFormat(IntEnum):
    """``virQEMUSaveFormat`` (``qemu_saveimage_format.h``); the name is the program."""

    RAW = 0
    GZIP = 1
    BZIP2 = 2
    XZ = 3
    LZOP = 4
    ZSTD = 5
    SPARSE = 6

    @property
    def codec(self) -> str | None:
        """The compressor's name, or None for raw and sparse."""
        return None if self in (SaveFormat.RAW, SaveFormat.SPARSE) else self.name.lower()


def sniff(view: memoryview) -> bool:
    """Whether ``view`` starts with a libvirt save image magic."""
    return bytes(view[:16]) in (MAGIC, MAGIC_PARTIAL)


@dataclass(eq=False, slots=True)
class LibvirtSave:
    """The libvirt header and data of a save image.

    Attributes:
        magic: ``LibvirtQemudSave`` (complete) or ``LibvirtQemudPart`` (unfinished save).
        version: header version (2).
        data_len: bytes between the header and the stream.
        was_running: 1 if the domain ran when saved.
        format: how the stream is stored.
        xml: the domain XML (edit it to change what ``virsh restore`` defines).
        cookie: the save cookie XML, or None.
        byte_order: ``"<"`` or ``">"``, as found (libvirt accepts both).
        unused: the 56 reserved bytes, kept verbatim.
        inner: the container of the stream after the header (mapped-ram for sparse).
        raw_data: the ``data_len`` bytes as read (written back while XML and cookie are unedited).
        original: the compressed stream as read (for compressed formats).
        digest: SHA-256 of the decompressed stream (for compressed formats).
    """

    magic: bytes
    version: int
    data_len: int
    was_running: int
    format: SaveFormat
    xml: str
    cookie: str | None = None
    byte_order: str = "<"
    unused: bytes = bytes(_UNUSED)
    inner: Any = None
    raw_data: bytes = field(default=b"", repr=False)
    original: memoryview = field(default=memoryview(b""), repr=False)
    digest: bytes = field(default=b"", repr=False)
    _xml0: str = field(default="", repr=False)
    _cookie0: str | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """``libvirt-<format>``, plus the inner container (``libvirt-sparse+mapped-ram``)."""
        own = f"libvirt-{self.format.name.lower()}"
        return own if self.inner is None else f"{own}+{self.inner.name}"

    @property
    def stream_offset(self) -> int:
        """Where the QEMU stream starts in the image."""
        return HEADER_SIZE + self.data_len

    @property
    def machine(self) -> str | None:
        """The machine type the domain XML names (``<type machine='...'>``)."""
        m = _MACHINE.search(self.xml)
        return m.group(2) if m else None

    def set_machine(self, machine: str) -> str | None:
        """Name ``machine`` in the domain XML; returns the machine it named before."""
        old = self.machine
        if old is not None and old != machine:
            self.xml = _MACHINE.sub(lambda m: f"{m.group(1)}{machine}{m.group(3)}", self.xml, 1)
        return old

    def sequential(self) -> LibvirtSave:
        """This image as ``raw``, its stream written sequentially: what a QEMU before 9.0 reads
        (a ``sparse`` image holds mapped-ram, which those QEMUs cannot load)."""
        return replace(self, format=SaveFormat.RAW, inner=None)

    def header_bytes(self) -> bytes:
        """The header and data region as they will be written."""
        if self.xml == self._xml0 and self.cookie == self._cookie0 and self.raw_data:
            data = self.raw_data
        else:
            xml = self.xml.encode() + b"\0"
            cookie = self.cookie.encode() + b"\0" if self.cookie is not None else b""
            used = len(xml) + len(cookie)
            if used > self.data_len:
                self.data_len = used + _PAD
            data = xml + cookie + bytes(self.data_len - used)
        head = _FIELDS.pack(
            self.version, self.data_len, self.was_running, self.format, self._cookie_offset(data)
        )
        if self.byte_order == ">":
            head = struct.pack(">5I", *_FIELDS.unpack(head))
        return self.magic + head + self.unused + data

    def _cookie_offset(self, data: bytes) -> int:
        if self.cookie is None:
            return 0
        return data.index(b"\0") + 1

    def write_to(self, stream: Stream, out: IO[bytes]) -> None:
        """Write the header, the data and the stream in this image's format."""
        from miglab.containers import write_to

        out.write(self.header_bytes())
        codec = self.format.codec
        if codec is not None:
            compressed.write_compressed(codec, stream, self.inner, self.original, self.digest, out)
        else:
            write_to(stream, out, self.inner)


def load(view: memoryview, load_inner: Any) -> Stream:
    """Read the header and data, then the stream after them."""
    if len(view) < HEADER_SIZE:
        raise TruncatedStreamError(
            f"libvirt save image ends inside its {HEADER_SIZE}-byte header", offset=len(view)
        )
    magic = bytes(view[:16])
    order = "<"
    fields = struct.unpack_from("<5I", view, 16)
    if fields[0] > _VERSION:  # qemuSaveImageReadHeader: try the other byte order
        order, fields = ">", struct.unpack_from(">5I", view, 16)
    version, data_len, was_running, fmt, cookie_offset = fields
    if version not in (1, 2):
        raise MigrationFormatError(
            f"libvirt save image version {version} is not supported (expected 1 or 2)", offset=16
        )
    if version == 1:
        fmt = SaveFormat.RAW
    try:
        save_format = SaveFormat(fmt)
    except ValueError:
        raise MigrationFormatError(
            f"libvirt save image format {fmt} is unknown (expected 0-6)", offset=28
        ) from None
    if data_len == 0:
        raise MigrationFormatError("libvirt save image has no domain XML (data_len 0)", offset=20)
    start = HEADER_SIZE + data_len
    if start > len(view):
        raise TruncatedStreamError(
            f"libvirt save image ends inside its {data_len} bytes of domain XML", offset=len(view)
        )
    if cookie_offset > data_len:
        raise MigrationFormatError(
            f"cookie offset {cookie_offset} is past the {data_len} bytes of XML data", offset=32
        )
    raw = bytes(view[HEADER_SIZE:start])
    xml_region = raw[:cookie_offset] if cookie_offset else raw
    xml = _text(xml_region, HEADER_SIZE, "domain XML")
    cookie = (
        _text(raw[cookie_offset:], HEADER_SIZE + cookie_offset, "cookie") if cookie_offset else None
    )
    info = LibvirtSave(
        magic,
        version,
        data_len,
        was_running,
        save_format,
        xml,
        cookie,
        order,
        bytes(view[16 + _FIELDS.size : HEADER_SIZE]),
        raw_data=raw,
        _xml0=xml,
        _cookie0=cookie,
    )
    body = view[start:]
    if save_format is SaveFormat.SPARSE:
        stream = mapped_ram.load(view, start)
    elif save_format.codec is not None:
        expanded = compressed.expand(save_format.codec, body, offset=start)
        info.original, info.digest = body, expanded.digest
        stream = _shifted(load_inner, expanded.view, 0, save_format.codec)
    else:
        stream = _shifted(load_inner, body, start, None)
    info.inner = stream.container
    stream.container = info
    return stream


def _shifted(load_inner: Any, view: memoryview, start: int, codec: str | None) -> Stream:
    """Load the stream after the header; error offsets are made file offsets (or named)."""
    try:
        stream: Stream = load_inner(view)
    except MigrationFormatError as exc:
        if codec is not None:
            raise type(exc)(
                f"in the {codec}-decompressed stream after the libvirt header: {exc.message}",
                offset=exc.offset,
                path=exc.path,
            ) from None
        offset = None if exc.offset is None else exc.offset + start
        raise type(exc)(exc.message, offset=offset, path=exc.path) from None
    return stream


def _text(region: bytes, at: int, what: str) -> str:
    end = region.find(b"\0")
    if end < 0:
        raise MigrationFormatError(f"libvirt {what} is not NUL-terminated", offset=at + len(region))
    try:
        return region[:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MigrationFormatError(
            f"libvirt {what} is not UTF-8 text", offset=at + exc.start
        ) from None
