"""Live migration through miglab: a proxy between a source QEMU and a destination QEMU.

The source QEMU migrates to the proxy (``migrate tcp:...``); the proxy converts the stream
as it arrives for the destination's QEMU release and machine type and forwards it to the
destination's ``-incoming``.  It is the file pipeline fed from a socket: the same framing
and device decoding (:class:`~miglab.stream.reader.PieceReader`, with descriptions of the
source build, :mod:`miglab.live.decoding`, since the vmdesc comes last), the same compat
conversion (:class:`~miglab.compat.qemu.Conversion`), and RAM passed through without being
held (:mod:`miglab.live.pump`).

* :mod:`~miglab.live.address`: ``tcp:HOST:PORT`` / ``unix:PATH``, listen and connect;
* :mod:`~miglab.live.inbound`: the bounded receive window;
* :mod:`~miglab.live.pump`: one stream, record by record;
* :mod:`~miglab.live.proxy`: :func:`proxy_once`, :func:`serve`, :class:`ProxySummary`.
"""

from __future__ import annotations

from miglab.live.address import Address, parse_address
from miglab.live.decoding import SourceDecoding, source_decoding
from miglab.live.proxy import ProxySummary, proxy_once, serve

__all__ = (
    "Address",
    "ProxySummary",
    "SourceDecoding",
    "parse_address",
    "proxy_once",
    "serve",
    "source_decoding",
)


def __dir__() -> tuple[str, ...]:
    return __all__
