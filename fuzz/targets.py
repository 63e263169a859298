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

__all__ = (
    "TARGETS",
    "dispatch",
    "join_pair",
    "postcopy_wrap",
    "prepare",
    "run_target",
    "seed_for",
    "split_pair",
)

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


def _qcow2(data: bytes) -> object:
    """A qcow2 image: its snapshot table, then each snapshot's VM state through its L1/L2."""
    from miglab.containers import qcow2

    table = qcow2.snapshots(data)
    for snap in table[:4]:
        if snap.vm_state_size:
            miglab.load(data, snapshot=snap.id).to_bytes()
    return table


def _slirp(data: bytes) -> object:
    """A ``slirp`` section payload (libslirp's format); what reads must write back exactly."""
    from miglab.devices.slirp import SLIRP_VERSION, read_slirp_state
    from miglab.visitors.qemufile import QEMUFileReader, QEMUFileWriter
    from miglab.visitors.qemufile_visitor import QEMUFileOutputVisitor
    from miglab.vmstate.walk import visit_vmstate

    r = QEMUFileReader(data)
    state = read_slirp_state(r, SLIRP_VERSION)
    w = QEMUFileWriter()
    visit_vmstate(QEMUFileOutputVisitor(w), state.desc, state, SLIRP_VERSION)
    if w.getvalue() != data[: r.pos]:
        raise AssertionError(f"slirp state of {r.pos} bytes does not write back the same")
    return state


#: A postcopy stream around the fuzz input (``qemu_savevm_send_packaged``): the header
#: and configuration of a real stream, POSTCOPY_ADVISE, then PACKAGED with the input as
#: its blob (LISTEN, device sections, RUN, perhaps PACKAGED again), then EOF.
_ADVISE = b"\x08\x00\x03\x00\x10" + (4096).to_bytes(8, "big") + (12).to_bytes(8, "big")


@functools.cache
def _postcopy_head() -> bytes:
    from seeds import DATA, REPRESENTATIVE

    data = (DATA / REPRESENTATIVE[3]).read_bytes()
    return data[: miglab.load(data).records[0].offset] + _ADVISE


def postcopy_wrap(blob: bytes) -> bytes:
    """The postcopy stream whose PACKAGED blob is ``blob``."""
    return (
        _postcopy_head() + b"\x08\x00\x07\x00\x04" + len(blob).to_bytes(4, "big") + blob + b"\x00"
    )


def _postcopy(data: bytes) -> object:
    """The input as a PACKAGED blob: nested records, nested PACKAGED, the depth limit."""
    return _load(postcopy_wrap(data))


def _live(data: bytes) -> object:
    """The proxy's pump fed ``data[1:]`` by a source over a socket pair (``data[0]`` even:
    7.2 to 7.2, forwarded; odd: 10.0 to 7.2, decoded and converted).

    Memory stays within the input plus two receive chunks, and the pump returns or
    raises a MiglabError; the harness closes both ends (as the proxy does).
    """
    import socket
    import threading

    from miglab.live.inbound import Window
    from miglab.live.pump import Pump

    if not data:
        return None
    convert, body = data[0] & 1, data[1:]
    src_out, src_in = socket.socketpair()
    dst_out, dst_in = socket.socketpair()

    def feed() -> None:
        with contextlib.suppress(OSError):  # the pump gave up and closed its side
            src_out.sendall(body)
            src_out.shutdown(socket.SHUT_WR)

    def drain() -> None:
        with contextlib.suppress(OSError):
            while dst_in.recv(1 << 16):
                pass

    threads = [threading.Thread(target=feed), threading.Thread(target=drain)]
    for t in threads:
        t.start()
    window = Window(src_in, dst_out, chunk=1 << 14)
    try:
        options = _live_conversion() if convert else {"src_qemu": "7.2", "to_qemu": "7.2"}
        return Pump(window, machine="pc-q35-7.2", **options).run()  # type: ignore[arg-type]
    finally:
        for sock in (src_in, dst_out):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for t in threads:
            t.join()
        src_out.close()
        dst_in.close()
        if len(window.buf) > len(body) + 2 * window.chunk:
            raise AssertionError(
                f"the pump held {len(window.buf)} bytes of a {len(body)}-byte input"
            )


@functools.cache
def _live_conversion() -> dict[str, object]:
    from miglab.live.decoding import source_decoding

    dec = source_decoding("10.0", "pc-q35-10.0")
    return {
        "src_qemu": "10.0",
        "to_qemu": "7.2",
        "allow_guest_visible": True,
        "schema": dec.schema,
        "descriptions": dec.descriptions,
    }


def split_pair(data: bytes) -> tuple[bytes, bytes]:
    """Two inputs from one: a be16 length, that many bytes, the rest."""
    n = int.from_bytes(data[:2], "big")
    return data[2 : 2 + n], data[2 + n :]


def join_pair(a: bytes, b: bytes) -> bytes:
    """The input :func:`split_pair` splits into ``a`` and ``b``."""
    return len(a).to_bytes(2, "big") + a + b


def _diff(data: bytes) -> object:
    """``miglab diff`` of two hostile streams (:func:`split_pair`): text and JSON."""
    from miglab.analysis.diff import diff_streams

    a, b = (miglab.load(x) for x in split_pair(data))
    result = diff_streams(a, b)
    str(result)
    json.dumps(result.to_dict())
    return result


def _fleet(data: bytes) -> object:
    """One hostile file's fleet rows: a bad file is a row whose error is a MiglabError."""
    import os
    import tempfile

    from miglab import errors
    from miglab.fleet.rows import FileStat, file_rows

    fd, path = tempfile.mkstemp(suffix=".mig", dir=_fleet_dir())
    try:
        os.write(fd, data)
        os.close(fd)
        rows = file_rows(FileStat.of(path))
    finally:
        os.unlink(path)
    kind = rows.stream["error_kind"]
    cls = getattr(errors, kind, None) if kind else errors.MiglabError
    if not (isinstance(cls, type) and issubclass(cls, errors.MiglabError)):
        raise AssertionError(f"fleet row error {kind}: {rows.stream['error']}")
    return rows


@functools.cache
def _fleet_dir() -> str:
    """A directory of our own (no ``manifest.json`` beside the files)."""
    import atexit
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="miglab-fuzz-fleet-")
    atexit.register(shutil.rmtree, path, True)
    return path


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


def _encoder(name: str) -> Target:
    def decode(data: bytes) -> object:
        from miglab import encoders

        return encoders.get(name).decode(data)

    decode.__name__ = f"decode_{name}"
    return decode


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def _targets() -> dict[str, Target]:
    out: dict[str, Target] = {
        "load": _load,
        "verify": _verify,
        "xbzrle": _xbzrle,
        "qcow2": _qcow2,
        "slirp": _slirp,
        "postcopy": _postcopy,
        "live": _live,
        "diff": _diff,
        "fleet": _fleet,
    }
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


def prepare() -> None:
    """Make what targets load and cache on first use (the 10.0 descriptions of the live
    pump, the postcopy frame, pyarrow for the fleet), so a first call is not a hang."""
    import miglab.fleet.rows  # noqa: F401

    _live_conversion()
    _postcopy_head()


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
