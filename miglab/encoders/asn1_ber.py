"""``asn1-ber``: the plain tree as ASN.1 BER (see :mod:`miglab.encoders.asn1`)."""

from __future__ import annotations

from miglab.encoders.asn1 import decode_ber as decode
from miglab.encoders.asn1 import encode_ber as encode
from miglab.encoders.asn1 import sniff_ber as sniff

__all__ = ("NAME", "decode", "encode", "sniff")

NAME = "asn1-ber"
