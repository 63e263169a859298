"""The user-mode network's ``slirp`` section: libslirp's own save format, version 4.

QEMU's ``-netdev user`` registers a hand-written savevm handler (``net/slirp.c``:
``register_savevm_live("slirp", ...)``) whose ``save_state`` hands the QEMUFile to
libslirp's ``slirp_state_save`` (``src/state.c``).  libslirp carries its own small
copy of QEMU's VMState interpreter (``src/vmstate.c``) and writes, with it:

* for every guest forwarding rule with a socket the guest has connected
  (``guestfwd=tcp:ADDR:PORT-chardev:ID``), the byte 42 and that socket
  (``vmstate_slirp_socket``: addresses, both socket buffers with their
  contents, the TCP control block);
* the byte 0;
* ``vmstate_slirp``: ``ip_id`` and the 16 DHCP leases (``bootp_clients``).

The vmdesc lists the section without a description (``"fields": [{"name": "data",
"type": "buffer"}]``), so QEMU's format knowledge has to come from here.  The
descriptions below mirror libslirp's version 4, field for field; the tag loop, which
is not VMState, and libslirp's one ``field_exists`` test (an address and port follow
only an IPv4 family) are decided by :func:`read_slirp_state`, so each socket gets the
description its bytes call for and the descriptions stay plain data.  The section is then an ordinary
:class:`~miglab.vmstate.state.VMState` whose description is made for its number of
sockets (:func:`slirp_description`): the stream writer, the tables and compat
handle it like any device.  How this came from libslirp's put/get calls, step by
step, is :mod:`miglab.devices.slirp_legacy`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import cache

from miglab.errors import LimitExceeded, MigrationFormatError
from miglab.limits import LIMITS
from miglab.visitors.qemufile import QEMUFileReader
from miglab.visitors.qemufile_visitor import QEMUFileInputVisitor
from miglab.vmstate.description import VMStateDescription, describe, field
from miglab.vmstate.state import VMState
from miglab.vmstate.walk import visit_vmstate

__all__ = (
    "NB_BOOTP_CLIENTS",
    "SLIRP_VERSION",
    "SOCKET_TAG",
    "SS_FAMILY_MIG_IPV4",
    "TCPCB_FIELDS",
    "VMSTATE_SLIRP_BOOTP_CLIENT",
    "VMSTATE_SLIRP_SBUF",
    "VMSTATE_SLIRP_SOCKET_ADDR",
    "VMSTATE_SLIRP_SOCKET_ADDR_OTHER",
    "VMSTATE_SLIRP_TCP",
    "read_slirp_state",
    "slirp_description",
    "socket_description",
)

SLIRP_VERSION = 4  # slirp_state_version()
SOCKET_TAG = 42  # written before each socket; the loader takes any non-zero byte
NB_BOOTP_CLIENTS = 16
TCPT_NTIMERS = 4
ETH_ALEN = 6
SS_FAMILY_MIG_IPV4 = 2  # the portable family numbers state.c sends (AF_INET)
SS_FAMILY_MIG_IPV6 = 10

#: ``vmstate_slirp_tcp``: the TCP control block, in wire order (name, VMStateInfo, count).
TCPCB_FIELDS: tuple[tuple[str, str, int | None], ...] = (
    ("t_state", "int16", None),
    ("t_timer", "int16", TCPT_NTIMERS),
    ("t_rxtshift", "int16", None),
    ("t_rxtcur", "int16", None),
    ("t_dupacks", "int16", None),
    ("t_maxseg", "uint16", None),
    ("t_force", "uint8", None),
    ("t_flags", "uint16", None),
    ("snd_una", "uint32", None),
    ("snd_nxt", "uint32", None),
    ("snd_up", "uint32", None),
    ("snd_wl1", "uint32", None),
    ("snd_wl2", "uint32", None),
    ("iss", "uint32", None),
    ("snd_wnd", "uint32", None),
    ("rcv_wnd", "uint32", None),
    ("rcv_nxt", "uint32", None),
    ("rcv_up", "uint32", None),
    ("irs", "uint32", None),
    ("rcv_adv", "uint32", None),
    ("snd_max", "uint32", None),
    ("snd_cwnd", "uint32", None),
    ("snd_ssthresh", "uint32", None),
    ("t_idle", "int16", None),
    ("t_rtt", "int16", None),
    ("t_rtseq", "uint32", None),
    ("t_srtt", "int16", None),
    ("t_rttvar", "int16", None),
    ("t_rttmin", "uint16", None),
    ("max_sndwnd", "uint32", None),
    ("t_oobflags", "uint8", None),
    ("t_iobc", "uint8", None),
    ("t_softerror", "int16", None),
    ("snd_scale", "uint8", None),
    ("rcv_scale", "uint8", None),
    ("request_r_scale", "uint8", None),
    ("requested_s_scale", "uint8", None),
    ("ts_recent", "uint32", None),
    ("ts_recent_age", "uint32", None),
    ("last_ack_sent", "uint32", None),
)


VMSTATE_SLIRP_TCP = describe(
    "slirp-tcp", [field(n, info, num=num) for n, info, num in TCPCB_FIELDS], version_id=0
)

#: ``VMSTATE_WITH_TMP(struct sbuf, struct sbuf_tmp, ...)``: the read and write
#: pointers as offsets into the buffer.
VMSTATE_SLIRP_SBUF_TMP = describe(
    "slirp-sbuf-tmp", [field("woff", "uint32"), field("roff", "uint32")], version_id=0
)

#: ``vmstate_slirp_sbuf``: a socket buffer, all ``sb_datalen`` bytes of it.
VMSTATE_SLIRP_SBUF = describe(
    "slirp-sbuf",
    [
        field("sb_cc", "uint32"),
        field("sb_datalen", "uint32"),
        field("tmp", "tmp", struct=VMSTATE_SLIRP_SBUF_TMP),
        field("sb_data", "buffer", size_field="sb_datalen"),  # VMSTATE_VBUFFER_UINT32
    ],
    version_id=0,
)

VMSTATE_SLIRP_SS_FAMILY = describe(
    "slirp-socket-addr/ss_family", [field("portable_family", "uint16")], version_id=0
)


def _socket_addr(inet: bool) -> VMStateDescription:
    """``vmstate_slirp_socket_addr`` for one family: the address and port follow for IPv4 only.

    libslirp decides with a ``field_exists`` test (``slirp_family_inet``); here the
    reader decides, per socket, which of the two layouts the bytes have, so the
    descriptions stay plain data that every encoder can carry.
    """
    family = [field("ss_family", "tmp", struct=VMSTATE_SLIRP_SS_FAMILY)]
    # As libslirp holds them: network-order bytes read as a host integer, so a
    # little-endian source sends 10.0.2.100 as 0x6402000a and port 80 as 0x5000.
    inet_fields = [field("sin_addr", "uint32"), field("sin_port", "uint16")] if inet else []
    return describe("slirp-socket-addr", [*family, *inet_fields], version_id=4)


#: ``vmstate_slirp_socket_addr`` of an IPv4 socket, and of any other family.
VMSTATE_SLIRP_SOCKET_ADDR = _socket_addr(True)
VMSTATE_SLIRP_SOCKET_ADDR_OTHER = _socket_addr(False)


@cache
def socket_description(fhost_inet: bool = True, lhost_inet: bool = True) -> VMStateDescription:
    """``vmstate_slirp_socket`` (version 4) with the tag byte ``slirp_state_save`` writes before it.

    Fields only older versions send (``so_faddr`` ... before ``fhost``) are not
    here: sections older than version 4 are kept opaque.
    """
    addr = {True: VMSTATE_SLIRP_SOCKET_ADDR, False: VMSTATE_SLIRP_SOCKET_ADDR_OTHER}
    return describe(
        "slirp-socket",
        [
            field("tag", "uint8"),
            field("so_urgc", "uint32"),
            field("fhost", "struct", struct=addr[fhost_inet], version_id=4),
            field("lhost", "struct", struct=addr[lhost_inet], version_id=4),
            field("so_iptos", "uint8"),
            field("so_emu", "uint8"),
            field("so_type", "uint8"),
            field("so_state", "int32"),
            field("so_rcv", "struct", struct=VMSTATE_SLIRP_SBUF),
            field("so_snd", "struct", struct=VMSTATE_SLIRP_SBUF),
            field("so_tcpcb", "struct", struct=VMSTATE_SLIRP_TCP),  # VMSTATE_STRUCT_POINTER
        ],
        version_id=SLIRP_VERSION,
    )


VMSTATE_SLIRP_BOOTP_CLIENT = describe(
    "slirp_bootpclient",
    [field("allocated", "uint16"), field("macaddr", "buffer", size=ETH_ALEN)],
    version_id=0,
)


def slirp_description(sockets: Sequence[VMStateDescription] = ()) -> VMStateDescription:
    """The section's layout: ``sockets`` (one description each, with its tag), the
    0 that ends them, then ``vmstate_slirp``."""
    socket_list = dataclasses.replace(
        field("sockets", "struct", struct=socket_description()), elements=tuple(sockets)
    )
    return describe(
        "slirp",
        [
            socket_list,
            field("end", "uint8"),
            field("ip_id", "uint16", version_id=2),
            field(
                "bootp_clients",
                "struct",
                struct=VMSTATE_SLIRP_BOOTP_CLIENT,
                num=NB_BOOTP_CLIENTS,
                version_id=3,
            ),
        ],
        version_id=SLIRP_VERSION,
    )


def _families(r: QEMUFileReader) -> tuple[bool, bool]:
    """Whether the socket at ``r.pos`` has IPv4 ``fhost`` and ``lhost`` (r is not moved)."""
    start = r.pos
    try:
        r.pos += 1 + 4  # tag, so_urgc
        fhost = r.be16("fhost's family") == SS_FAMILY_MIG_IPV4
        r.pos += 6 if fhost else 0
        lhost = r.be16("lhost's family") == SS_FAMILY_MIG_IPV4
    finally:
        r.pos = start
    return fhost, lhost


def read_slirp_state(r: QEMUFileReader, version_id: int = SLIRP_VERSION) -> VMState:
    """Read a ``slirp`` section payload as ``slirp_state_load`` does.

    The sockets are read one by one, as the loader does, until a zero tag, each
    with the description its address families call for; the whole payload is
    then one VMState of :func:`slirp_description` for those sockets.

    Raises:
        MigrationFormatError: the bytes are not libslirp's format (with the
            offset and member path), or the version is not 4.
    """
    if version_id != SLIRP_VERSION:
        raise MigrationFormatError(
            f"slirp section version {version_id}; only version {SLIRP_VERSION} is described",
            offset=r.pos,
            path="slirp",
        )
    start = r.pos
    v = QEMUFileInputVisitor(r)
    sockets: list[VMStateDescription] = []
    while r.peek_u8() != 0:  # `while (slirp_istream_read_u8(&f))`
        if r.at_end():
            raise MigrationFormatError(
                "slirp state ends before the zero that closes its socket list",
                offset=r.pos,
                path="slirp",
            )
        if len(sockets) >= LIMITS.max_array_elements:
            raise LimitExceeded(
                f"more than {len(sockets)} slirp sockets", offset=r.pos, path="slirp"
            )
        desc = socket_description(*_families(r))
        visit_vmstate(v, desc, None, SLIRP_VERSION)
        sockets.append(desc)
    r.pos = start
    return visit_vmstate(
        QEMUFileInputVisitor(r), slirp_description(sockets), None, version_id, "slirp"
    )
