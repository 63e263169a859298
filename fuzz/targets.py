"""What the fuzzer feeds bytes to: every miglab entry point that reads untrusted bytes.

A target is a function of one ``bytes`` argument.  It may raise
:class:`~miglab.errors.MiglabError` (that is the contract for bad input);
any other exception, a hang or runaway memory is a bug.  Targets written by
other parts of miglab (schema loading, ``check-schemas``, the encoders) are
included when their modules exist, so the harness grows with the package.

The first byte of a fuzz input picks the target (``data[0] % len(TARGETS)``)
and the rest is the target's input; :func:`dispatch` does that, and
:func:`seed_for` prefixes a seed with its target's byte.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
from collections.abc import Callable

import miglab
from miglab.errors import MiglabError

__all__ = ("TARGETS", "dispatch", "run_target", "seed_for")

Target = Callable[[bytes], object]


def _load(data: bytes) -> object:
    """``miglab.load`` on raw bytes; what loads must also re-encode and verify cleanly."""
    from miglab.stream.jsonview import stream_to_jsonable
    from miglab.stream.verify import verify

    stream = miglab.load(data)
    stream.to_bytes()
    json.dumps(stream_to_jsonable(stream))
    verify(data)
    return stream


def _verify(data: bytes) -> object:
    """``verify`` never raises on bad bytes: it reports findings."""
    from miglab.stream.verify import verify

    return verify(data)


def _xbzrle(data: bytes) -> object:
    """An XBZRLE delta applied to a 4 KiB page (``xbzrle_decode_buffer``)."""
    from miglab.stream.xbzrle import xbzrle_decode

    page = bytearray(4096)
    xbzrle_decode(page, data)
    return page


def _json_or_bytes(data: bytes) -> object:
    """Parsed JSON if the bytes are JSON (the schema loaders take both shapes)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def _schema_index(data: bytes) -> object:
    from miglab.vmstate.from_schema import SchemaIndex

    parsed = _json_or_bytes(data)
    if parsed is None:
        return None
    return SchemaIndex.load(parsed)


def _schema_check(data: bytes) -> object:
    from miglab.compat.schema_check import check_schemas, load_schema

    schema = load_schema(data)
    return check_schemas(schema, schema)


@functools.cache
def _per_schema() -> str:
    """The ASN.1 module schema-bound inputs are read with: the first PER seed's.

    The module is generated from a stream's descriptions, so PER inputs made
    from other streams fail its schema id check (a MiglabError, as they should).
    """
    from seeds import DATA, REPRESENTATIVE, tiny_stream

    from miglab.encoders.asn1 import schema_text

    return schema_text(tiny_stream(DATA / REPRESENTATIVE[0], 0))


def _encoder(name: str) -> Target:
    def decode(data: bytes) -> object:
        from miglab import encoders

        fmt = encoders.get(name)
        kwargs = {}
        if fmt.needs_schema:
            kwargs["schema"] = _per_schema()
        return fmt.decode(data, **kwargs)

    decode.__name__ = f"decode_{name}"
    return decode


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def _targets() -> dict[str, Target]:
    out: dict[str, Target] = {"load": _load, "verify": _verify, "xbzrle": _xbzrle}
    if _exists("miglab.vmstate.from_schema"):
        out["schema"] = _schema_index
    if _exists("miglab.compat.schema_check"):
        out["check-schemas"] = _schema_check
    if _exists("miglab.encoders"):
        from miglab import encoders

        for name in encoders.names():
            out[f"decode:{name}"] = _encoder(name)
    return out


TARGETS: dict[str, Target] = _targets()
"""Target name -> function; the order fixes each target's selector byte."""

_NAMES = list(TARGETS)


def run_target(name: str, data: bytes) -> None:
    """Run one target, swallowing the :class:`MiglabError` bad input is allowed to raise."""
    with contextlib.suppress(MiglabError):
        TARGETS[name](data)


def dispatch(data: bytes) -> None:
    """The fuzz entry point: the first byte picks the target, the rest is its input."""
    if not data:
        return
    run_target(_NAMES[data[0] % len(_NAMES)], bytes(data[1:]))


def seed_for(name: str, data: bytes) -> bytes:
    """A fuzz input that sends ``data`` to target ``name``."""
    return bytes([_NAMES.index(name)]) + data
