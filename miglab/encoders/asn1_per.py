"""``asn1-per``: the plain tree as ASN.1 aligned PER, schema-bound (see :mod:`miglab.encoders.asn1`).

``decode(data, schema=miglab.encoders.asn1.schema_text(stream))``; without
``schema=`` it raises an EncodingError naming the schema id it needs.
"""

from __future__ import annotations

from miglab.encoders.asn1 import decode_per as decode
from miglab.encoders.asn1 import encode_per as encode
from miglab.encoders.asn1 import sniff_per as sniff

__all__ = ("NAME", "decode", "encode", "sniff")

NAME = "asn1-per"
