"""Socket addresses in QEMU's own spelling: ``tcp:HOST:PORT`` and ``unix:PATH``.

The proxy listens where the source QEMU's ``migrate`` URI points and connects to the
destination's ``-incoming`` URI, so an :class:`Address` is written exactly as QEMU writes
those URIs (``tcp:127.0.0.1:4444``, ``tcp:[::1]:4444``, ``unix:/run/mig.sock``);
:meth:`Address.uri` gives the text back for QEMU.  Options after a comma (QEMU's
``,server=on``) are not part of a migration URI and are refused.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from dataclasses import dataclass
from typing import Literal

from miglab.errors import AddressError, LiveError

__all__ = ("Address", "parse_address")


@dataclass(frozen=True, slots=True)
class Address:
    """Where a migration socket is.

    Attributes:
        kind: ``"tcp"`` or ``"unix"``.
        host: the TCP host (name or address, without IPv6 brackets); empty for unix.
        port: the TCP port (0 lets :meth:`listen` pick one); 0 for unix.
        path: the unix socket path; empty for tcp.
    """

    kind: Literal["tcp", "unix"]
    host: str = ""
    port: int = 0
    path: str = ""

    @property
    def uri(self) -> str:
        """The address as QEMU's ``migrate`` / ``-incoming`` URI."""
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"

    def __str__(self) -> str:
        return self.uri

    def listen(self, backlog: int = 1) -> socket.socket:
        """A bound, listening socket (a stale unix socket file at ``path`` is replaced).

        Raises:
            LiveError: the address cannot be bound (the message has the OS reason).
        """
        try:
            if self.kind == "unix":
                _remove_stale_socket(self.path)
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                target: str | tuple[str, int] = self.path
            else:
                family, target = _tcp_target(self.host, self.port)
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(target)
                sock.listen(backlog)
            except OSError:
                sock.close()
                raise
        except OSError as exc:
            raise LiveError(f"cannot listen on {self.uri}: {exc.strerror or exc}") from None
        return sock

    def bound(self, sock: socket.socket) -> Address:
        """This address with the port a listening ``sock`` really got (for port 0)."""
        if self.kind == "unix":
            return self
        return Address("tcp", self.host, int(sock.getsockname()[1]))

    def connect(self, timeout: float | None = 30.0) -> socket.socket:
        """A connected stream socket (blocking once connected).

        Raises:
            LiveError: nothing accepts at the address within ``timeout`` seconds.
        """
        try:
            if self.kind == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                target: str | tuple[str, int] = self.path
            else:
                family, target = _tcp_target(self.host, self.port)
                sock = socket.socket(family, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(target)
            except OSError:
                sock.close()
                raise
        except OSError as exc:
            raise LiveError(f"cannot connect to {self.uri}: {exc.strerror or exc}") from None
        sock.settimeout(None)
        if self.kind == "tcp":
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def parse_address(text: str) -> Address:
    """Parse ``tcp:HOST:PORT`` (``tcp:[v6]:PORT``) or ``unix:PATH``.

    Raises:
        AddressError: anything else; the message quotes the text and the expected forms.
    """
    kind, sep, rest = text.partition(":")
    if sep and kind == "unix" and rest and "," not in rest:
        return Address("unix", path=rest)
    if sep and kind == "tcp" and "," not in rest:
        host, sep, port = rest.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if sep and host and port.isdigit() and int(port) < 65536:
            return Address("tcp", host, int(port))
    raise AddressError(f"bad address {text!r}: expected tcp:HOST:PORT or unix:PATH")


def _tcp_target(host: str, port: int) -> tuple[socket.AddressFamily, tuple[str, int]]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, _, _, target = infos[0]
    return family, (str(target[0]), int(target[1]))


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file left by an earlier listener; refuse to remove anything else."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise LiveError(f"cannot listen on unix:{path}: it exists and is not a socket")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
