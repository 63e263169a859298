"""libslirp's save/load, converted to visitors one step at a time.

:mod:`miglab.devices.slirp` reads the ``slirp`` section with descriptions and
the one walker.  It was reached in steps, each tested against real sections
(the bytes must never change), as the serial handler was
(:mod:`miglab.devices.serial_legacy`):

1. :func:`slirp_state_save` / :func:`slirp_state_load`: what libslirp's
   ``slirp_state_save``/``slirp_state_load`` (``src/state.c``) do, spelled out
   as the ``put``/``get`` calls its VMState interpreter (``src/vmstate.c``)
   makes for each field: ``qemu_put_be32(f, so->so_urgc)`` ...
2. :func:`slirp_visit_file`: one function for both directions, still called
   with the QEMUFile; each ``qemu_put_be16(f, x)`` became
   ``visit_type_u16(v, "x", x)`` on the visitor found with :func:`visitor_for`.
3. the QEMUFile gone: the fields became descriptions
   (:func:`~miglab.devices.slirp.socket_description` ...) walked by
   :func:`~miglab.vmstate.walk.visit_vmstate` with any visitor; only the tag
   loop stays code (:func:`~miglab.devices.slirp.read_slirp_state`).

Steps 1 and 2 work on the plain object tree of the section (dicts and lists,
the form :class:`~miglab.visitors.ObjectOutputVisitor` gives for step 3's
state), so all three can be compared value for value.
"""

from __future__ import annotations

from typing import Any

from miglab.devices.slirp import NB_BOOTP_CLIENTS, SLIRP_VERSION, SS_FAMILY_MIG_IPV4, TCPCB_FIELDS
from miglab.errors import MigrationFormatError
from miglab.visitors.base import (
    Visitor,
    visit_end_list,
    visit_end_struct,
    visit_next_list,
    visit_start_list,
    visit_start_struct,
    visit_type_buffer,
    visit_type_i32,
    visit_type_int_array,
    visit_type_u8,
    visit_type_u16,
    visit_type_u32,
)
from miglab.visitors.qemufile import (
    QEMUFileReader,
    QEMUFileWriter,
    qemu_get_be8,
    qemu_get_be16,
    qemu_get_be32,
    qemu_get_buffer,
    qemu_put_be8,
    qemu_put_be16,
    qemu_put_be32,
    qemu_put_buffer,
)
from miglab.visitors.qemufile_visitor import visitor_for

__all__ = ("slirp_state_load", "slirp_state_save", "slirp_visit_file")

Tree = dict[str, Any]

_SIZES = {"uint8": 1, "uint16": 2, "uint32": 4, "int16": 2}


def _check_version(version_id: int, at: int) -> None:
    if version_id != SLIRP_VERSION:
        raise MigrationFormatError(
            f"slirp version {version_id}; steps 1 and 2 handle version {SLIRP_VERSION}",
            offset=at,
        )


def _signed(value: int, bits: int) -> int:
    return value - (1 << bits) if value >> (bits - 1) else value


# --- step 1: the put/get calls ---------------------------------------------------
def _put(f: QEMUFileWriter, info: str, value: int) -> None:
    size = _SIZES[info]
    {1: qemu_put_be8, 2: qemu_put_be16, 4: qemu_put_be32}[size](f, value & ((1 << 8 * size) - 1))


def _get(f: QEMUFileReader, info: str) -> int:
    size = _SIZES[info]
    raw = {1: qemu_get_be8, 2: qemu_get_be16, 4: qemu_get_be32}[size](f)
    return _signed(raw, 8 * size) if info.startswith("int") else raw


def _put_addr(f: QEMUFileWriter, a: Tree) -> None:
    family = a["ss_family"]["portable_family"]  # ss_family_pre_save
    qemu_put_be16(f, family)
    if family == SS_FAMILY_MIG_IPV4:  # slirp_family_inet
        qemu_put_be32(f, a["sin_addr"])
        qemu_put_be16(f, a["sin_port"])


def _get_addr(f: QEMUFileReader) -> Tree:
    a: Tree = {"ss_family": {"portable_family": qemu_get_be16(f)}}
    if a["ss_family"]["portable_family"] == SS_FAMILY_MIG_IPV4:
        a["sin_addr"] = qemu_get_be32(f)
        a["sin_port"] = qemu_get_be16(f)
    return a


def _put_sbuf(f: QEMUFileWriter, sb: Tree) -> None:
    qemu_put_be32(f, sb["sb_cc"])
    qemu_put_be32(f, sb["sb_datalen"])
    qemu_put_be32(f, sb["tmp"]["woff"])  # sbuf_tmp_pre_save: pointers as offsets
    qemu_put_be32(f, sb["tmp"]["roff"])
    qemu_put_buffer(f, sb["sb_data"])


def _get_sbuf(f: QEMUFileReader) -> Tree:
    sb: Tree = {"sb_cc": qemu_get_be32(f), "sb_datalen": qemu_get_be32(f)}
    sb["tmp"] = {"woff": qemu_get_be32(f), "roff": qemu_get_be32(f)}
    sb["sb_data"] = qemu_get_buffer(f, sb["sb_datalen"])
    return sb


def _put_socket(f: QEMUFileWriter, so: Tree) -> None:
    qemu_put_be32(f, so["so_urgc"])
    _put_addr(f, so["fhost"])
    _put_addr(f, so["lhost"])
    qemu_put_be8(f, so["so_iptos"])
    qemu_put_be8(f, so["so_emu"])
    qemu_put_be8(f, so["so_type"])
    qemu_put_be32(f, so["so_state"] & 0xFFFFFFFF)
    _put_sbuf(f, so["so_rcv"])
    _put_sbuf(f, so["so_snd"])
    for name, info, num in TCPCB_FIELDS:
        for value in so["so_tcpcb"][name] if num else [so["so_tcpcb"][name]]:
            _put(f, info, value)


def _get_socket(f: QEMUFileReader, tag: int) -> Tree:
    so: Tree = {"tag": tag, "so_urgc": qemu_get_be32(f)}
    so["fhost"] = _get_addr(f)
    so["lhost"] = _get_addr(f)
    so["so_iptos"] = qemu_get_be8(f)
    so["so_emu"] = qemu_get_be8(f)
    so["so_type"] = qemu_get_be8(f)
    so["so_state"] = _signed(qemu_get_be32(f), 32)
    so["so_rcv"] = _get_sbuf(f)
    so["so_snd"] = _get_sbuf(f)
    tcb: Tree = {}
    for name, info, num in TCPCB_FIELDS:
        tcb[name] = [_get(f, info) for _ in range(num)] if num else _get(f, info)
    so["so_tcpcb"] = tcb
    return so


def slirp_state_save(f: QEMUFileWriter, tree: Tree) -> None:
    """Write the section as ``slirp_state_save`` does, with ``qemu_put_*`` calls."""
    for so in tree["sockets"]:
        qemu_put_be8(f, so["tag"])  # 42
        _put_socket(f, so)
    qemu_put_be8(f, tree["end"])  # 0
    qemu_put_be16(f, tree["ip_id"])  # vmstate_slirp
    for client in tree["bootp_clients"]:
        qemu_put_be16(f, client["allocated"])
        qemu_put_buffer(f, client["macaddr"])


def slirp_state_load(f: QEMUFileReader, version_id: int = SLIRP_VERSION) -> Tree:
    """Read the section as ``slirp_state_load`` does, with ``qemu_get_*`` calls."""
    _check_version(version_id, f.pos)
    sockets = []
    while tag := qemu_get_be8(f):
        sockets.append(_get_socket(f, tag))
    tree: Tree = {"sockets": sockets, "end": 0, "ip_id": qemu_get_be16(f)}
    tree["bootp_clients"] = [
        {"allocated": qemu_get_be16(f), "macaddr": qemu_get_buffer(f, 6)}
        for _ in range(NB_BOOTP_CLIENTS)
    ]
    return tree


# --- step 2: one function, the visitor found through the QEMUFile ----------------
def _visit_addr(v: Visitor, name: str, a: Tree | None) -> Tree:
    a = a if a is not None else {"ss_family": {}}
    visit_start_struct(v, name)
    visit_start_struct(v, "ss_family")
    fam = a["ss_family"]
    fam["portable_family"] = visit_type_u16(v, "portable_family", fam.get("portable_family"))
    visit_end_struct(v)
    if fam["portable_family"] == SS_FAMILY_MIG_IPV4:
        a["sin_addr"] = visit_type_u32(v, "sin_addr", a.get("sin_addr"))
        a["sin_port"] = visit_type_u16(v, "sin_port", a.get("sin_port"))
    visit_end_struct(v)
    return a


def _visit_sbuf(v: Visitor, name: str, sb: Tree | None) -> Tree:
    sb = sb if sb is not None else {"tmp": {}}
    visit_start_struct(v, name)
    sb["sb_cc"] = visit_type_u32(v, "sb_cc", sb.get("sb_cc"))
    sb["sb_datalen"] = visit_type_u32(v, "sb_datalen", sb.get("sb_datalen"))
    visit_start_struct(v, "tmp")
    sb["tmp"]["woff"] = visit_type_u32(v, "woff", sb["tmp"].get("woff"))
    sb["tmp"]["roff"] = visit_type_u32(v, "roff", sb["tmp"].get("roff"))
    visit_end_struct(v)
    sb["sb_data"] = visit_type_buffer(v, "sb_data", sb.get("sb_data"), sb["sb_datalen"])
    visit_end_struct(v)
    return sb


def _visit_tcpcb(v: Visitor, tcb: Tree | None) -> Tree:
    tcb = tcb if tcb is not None else {}
    visit_start_struct(v, "so_tcpcb")
    for name, info, num in TCPCB_FIELDS:
        size, signed = _SIZES[info], info.startswith("int")
        if num:
            tcb[name] = visit_type_int_array(v, name, tcb.get(name), num, size, signed)
        else:
            tcb[name] = v.type_int(name, tcb.get(name), size, signed)
    visit_end_struct(v)
    return tcb


def _visit_socket(v: Visitor, so: Tree) -> Tree:
    so["so_urgc"] = visit_type_u32(v, "so_urgc", so.get("so_urgc"))
    so["fhost"] = _visit_addr(v, "fhost", so.get("fhost"))
    so["lhost"] = _visit_addr(v, "lhost", so.get("lhost"))
    so["so_iptos"] = visit_type_u8(v, "so_iptos", so.get("so_iptos"))
    so["so_emu"] = visit_type_u8(v, "so_emu", so.get("so_emu"))
    so["so_type"] = visit_type_u8(v, "so_type", so.get("so_type"))
    so["so_state"] = visit_type_i32(v, "so_state", so.get("so_state"))
    so["so_rcv"] = _visit_sbuf(v, "so_rcv", so.get("so_rcv"))
    so["so_snd"] = _visit_sbuf(v, "so_snd", so.get("so_snd"))
    so["so_tcpcb"] = _visit_tcpcb(v, so.get("so_tcpcb"))
    return so


def slirp_visit_file(
    f: QEMUFileReader | QEMUFileWriter, tree: Tree | None = None, version_id: int = SLIRP_VERSION
) -> Tree:
    """Save ``tree`` or load a new one through the visitor registered on ``f``."""
    v = visitor_for(f)
    _check_version(version_id, f.pos)
    out: Tree = tree if tree is not None else {"sockets": []}
    sockets: list[Tree] = out["sockets"]
    visit_start_struct(v, "slirp")
    i = 0
    while True:  # a tag before each socket, 0 after the last
        more = i < len(sockets)  # the output side's decision
        tag = visit_type_u8(v, "tag", sockets[i]["tag"] if more else out.get("end", 0))
        if v.is_input:
            more = tag != 0  # the loader takes any non-zero byte as "a socket follows"
            if more:
                sockets.append({"tag": tag})
        if not more:
            out["end"] = tag
            break
        visit_start_struct(v, f"sockets[{i}]")
        _visit_socket(v, sockets[i])
        visit_end_struct(v)
        i += 1
    out["ip_id"] = visit_type_u16(v, "ip_id", out.get("ip_id"))
    clients = out.setdefault("bootp_clients", [{} for _ in range(NB_BOOTP_CLIENTS)])
    visit_start_list(v, "bootp_clients", NB_BOOTP_CLIENTS)
    for client in clients:
        visit_start_struct(v, None)
        client["allocated"] = visit_type_u16(v, "allocated", client.get("allocated"))
        client["macaddr"] = visit_type_buffer(v, "macaddr", client.get("macaddr"), 6)
        visit_end_struct(v)
        visit_next_list(v)
    visit_end_list(v)
    visit_end_struct(v)
    return out
