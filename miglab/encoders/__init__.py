"""Encoders: one object tree, many wire formats (the *encode* seam).

Every format is a module with the same two functions, ``encode(stream) ->
bytes`` and ``decode(data) -> Stream``, plus ``sniff(data)`` for detection:

=============  =====================================================  ===============
name           what                                                   decodes with
=============  =====================================================  ===============
``legacy``     QEMU's own stream (:mod:`miglab.stream`)               its vmdesc
``sized``      QEMU's records + a length per payload (skippable)      its vmdesc
``json``       the plain tree (:mod:`.tree`) as JSON, bytes base64    nothing
``cbor``       the plain tree as CBOR                                 nothing
``msgpack``    the plain tree as MessagePack                          nothing
``asn1-ber``   typed ASN.1 (:mod:`.asn1`) as BER                      nothing
``asn1-per``   typed ASN.1 as aligned PER (smaller than legacy)       nothing
=============  =====================================================  ===============

Example::

    from miglab import encoders
    data = encoders.encode(stream, "cbor")
    encoders.detect(data)                     # "cbor"
    encoders.decode(data).to_bytes() == stream.to_bytes()

Every decoder raises a :class:`~miglab.errors.MiglabError`
(:class:`~miglab.errors.EncodingError` or
:class:`~miglab.errors.MigrationFormatError`) on bad input, never another
exception; lengths, counts and depths are bounded by the input and by
:data:`miglab.limits.LIMITS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

from miglab.errors import EncodingError
from miglab.limits import budget

if TYPE_CHECKING:
    from miglab.stream.model import Stream
    from miglab.vmstate.filters import Filters

__all__ = ("Format", "decode", "detect", "encode", "get", "names")


@dataclass(frozen=True, slots=True)
class Format:
    """One registered wire format.

    Attributes:
        name: the registry name (``"cbor"``).
        module_name: the module with ``encode``/``decode``/``sniff``, imported
            on first use (so that listing the formats costs no codec library).
        binary: whether the bytes are binary (not text).
        self_describing: whether decoding needs nothing beyond the bytes
            (``legacy``/``sized`` count: they carry QEMU's vmdesc).
    """

    name: str
    module_name: str
    binary: bool = True
    self_describing: bool = True

    @property
    def module(self) -> ModuleType:
        """The format's module (imported now if it was not yet)."""
        return importlib.import_module(f"{__name__}.{self.module_name}")

    @property
    def encode(self) -> Callable[[Stream], bytes]:
        """The format's ``encode(stream) -> bytes``."""
        return self.module.encode

    @property
    def decode(self) -> Callable[..., Stream]:
        """The format's ``decode(data) -> Stream``, under one budget for ``data``
        (:func:`miglab.limits.budget`: every format is bounded the same way)."""
        inner = self.module.decode

        def decode(data: bytes | memoryview, /, **kwargs: Any) -> Stream:
            with budget(len(data)):
                return inner(data, **kwargs)

        return decode

    def sniff(self, data: bytes) -> bool:
        """Whether ``data`` looks like this format."""
        return bool(self.module.sniff(data))


_FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("legacy", "legacy"),
        Format("sized", "sized"),
        Format("json", "json_format", binary=False),
        Format("cbor", "cbor_format"),
        Format("msgpack", "msgpack_format"),
        Format("asn1-ber", "asn1_ber"),
        Format("asn1-per", "asn1_per"),
    )
}


def names() -> tuple[str, ...]:
    """The registered format names, legacy first."""
    return tuple(_FORMATS)


def get(name: str) -> Format:
    """The format called ``name``; EncodingError naming the known ones otherwise."""
    try:
        return _FORMATS[name]
    except KeyError:
        raise EncodingError(
            f"unknown format {name!r}; expected one of {', '.join(_FORMATS)}"
        ) from None


def detect(data: bytes | memoryview) -> str:
    """The name of the format ``data`` is in, from its first bytes.

    Raises:
        EncodingError: no format recognises the bytes.
    """
    head = bytes(data[:16])
    for f in _FORMATS.values():
        if f.sniff(head):
            return f.name
    raise EncodingError(f"cannot tell the format of data starting {head[:8].hex()}", offset=0)


def encode(stream: Stream, name: str, *, filters: Filters | None = None) -> bytes:
    """``stream`` in format ``name``; ``filters``: marshal filters run on every device state
    on its way into the encoding (``stream`` itself is left as it was)."""
    if filters:
        from miglab.stream.filtering import filter_stream

        stream = filter_stream(stream, filters, marshal=True)
    return get(name).encode(stream)


def decode(
    data: bytes | memoryview,
    name: str | None = None,
    *,
    filters: Filters | None = None,
    **kwargs: Any,
) -> Stream:
    """Decode ``data`` (format detected unless ``name`` is given); kwargs go to the decoder.
    ``filters``: unmarshal filters run on every device state decoded."""
    stream = get(name or detect(data)).decode(data, **kwargs)
    if filters:
        from miglab.stream.filtering import filter_stream

        stream = filter_stream(stream, filters, marshal=False)
    return stream
