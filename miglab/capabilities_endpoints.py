"""Capability endpoints beyond the process: QMP-style JSON lines over loopback, and real QEMU.

The wire protocol mirrors QMP: on connect the server sends a greeting line
``{"QMP": {"version": {"miglab": ...}, "capabilities": []}}``; then each request line
``{"execute": NAME, "arguments": {...}, "id": ...}`` gets one reply line
``{"return": ...}`` or ``{"error": {"class": ..., "desc": ...}}`` (``id`` echoed).  Lines are
bounded (:data:`MAX_LINE`), sockets time out (:data:`TIMEOUT`) and only loopback addresses are
served or dialled: capabilities steer how a stream is encoded, so they are not a network
service.

    >>> with serve_endpoint(LocalEndpoint(mask_of(["encoder-json"]))) as server:
    ...     with SocketEndpoint(*server.address) as remote:
    ...         negotiate(remote, LocalEndpoint(mask_of(["encoder-json"])))
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import socket
import socketserver
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from miglab import __version__
from miglab.capabilities import (
    CAPABILITIES,
    MIGLAB_BLOCK,
    QUERY,
    SET,
    Endpoint,
    error_reply,
    from_qemu_capabilities,
)
from miglab.errors import CapabilityError

__all__ = (
    "MAX_LINE",
    "TIMEOUT",
    "EndpointServer",
    "QemuEndpoint",
    "SocketEndpoint",
    "serve_endpoint",
)

#: Longest request or reply line accepted, in bytes.
MAX_LINE = 64 << 10
#: Seconds a socket waits for the peer before giving up.
TIMEOUT = 5.0


def _loopback(host: str) -> str:
    """``host`` if it is a loopback address (or ``localhost``), else CapabilityError."""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise CapabilityError(f"capability endpoints are loopback only; got host {host!r}")
    return host


class _Handler(socketserver.StreamRequestHandler):
    timeout = TIMEOUT
    server: _Server

    def handle(self) -> None:
        self._send({"QMP": {"version": {"miglab": __version__}, "capabilities": []}})
        while True:
            try:
                line = self.rfile.readline(MAX_LINE + 1)
            except OSError:  # timeout or reset: end this session
                return
            if not line:
                return
            if len(line) > MAX_LINE:
                self._send(error_reply("GenericError", f"request line over {MAX_LINE} bytes"))
                return
            self._send(self._answer(line))

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except ValueError as exc:
            return error_reply("GenericError", f"JSON parse error: {exc}")
        if not (isinstance(request, dict) and isinstance(request.get("execute"), str)):
            return error_reply("GenericError", 'expected {"execute": name, ...}')
        arguments = request.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            return error_reply("GenericError", "'arguments' must be an object")
        with self.server.lock:  # one endpoint, possibly many sessions
            reply = self.server.endpoint.execute(request["execute"], arguments)
        reply = (
            dict(reply) if isinstance(reply, Mapping) else error_reply("GenericError", "bad reply")
        )
        if "id" in request:
            reply["id"] = request["id"]
        return reply

    def _send(self, message: Mapping[str, Any]) -> None:
        with contextlib.suppress(OSError):  # the peer left; nothing to tell it
            self.wfile.write(json.dumps(message).encode() + b"\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.lock = threading.Lock()
        super().__init__(address, _Handler)


class EndpointServer:
    """A running QMP-style server for one endpoint (see :func:`serve_endpoint`).

    Attributes:
        address: ``(host, port)`` it listens on.
    """

    def __init__(self, server: _Server) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="miglab-caps", daemon=True
        )
        self._thread.start()
        host, port = server.server_address[:2]
        self.address: tuple[str, int] = (str(host), int(port))

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(TIMEOUT)

    def __enter__(self) -> EndpointServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def serve_endpoint(endpoint: Endpoint, host: str = "127.0.0.1", port: int = 0) -> EndpointServer:
    """Serve ``endpoint`` over QMP-style JSON lines on a loopback ``host:port`` (0 = any port).

    Raises:
        CapabilityError: ``host`` is not a loopback address, or the port cannot be bound.
    """
    try:
        return EndpointServer(_Server((_loopback(host), port), endpoint))
    except OSError as exc:
        raise CapabilityError(f"cannot serve capabilities on {host}:{port}: {exc}") from exc


class SocketEndpoint:
    """A client for :func:`serve_endpoint`: an :class:`Endpoint` whose ``execute`` goes over TCP.

    Raises:
        CapabilityError: not loopback, cannot connect, timeout, or a malformed reply.
    """

    def __init__(self, host: str, port: int, *, timeout: float = TIMEOUT) -> None:
        self._where = f"{host}:{port}"
        try:
            self._sock = socket.create_connection((_loopback(host), port), timeout=timeout)
        except OSError as exc:
            raise CapabilityError(f"cannot connect: {exc}", path=self._where) from exc
        self._file = self._sock.makefile("rwb")
        self._next_id = 0
        greeting = self._read()
        if "QMP" not in greeting:
            self.close()
            raise CapabilityError(
                f"expected a QMP greeting, got {greeting!r:.80}", path=self._where
            )

    def execute(self, command: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Send one command and return the server's reply (without its ``id``)."""
        self._next_id += 1
        request: dict[str, Any] = {"execute": command, "id": self._next_id}
        if arguments is not None:
            request["arguments"] = dict(arguments)
        try:
            self._file.write(json.dumps(request).encode() + b"\n")
            self._file.flush()
        except OSError as exc:
            raise CapabilityError(f"cannot send {command}: {exc}", path=self._where) from exc
        reply = self._read()
        if reply.pop("id", None) != self._next_id:
            raise CapabilityError(f"reply to {command} has the wrong id", path=self._where)
        return reply

    def _read(self) -> dict[str, Any]:
        try:
            line = self._file.readline(MAX_LINE + 1)
        except OSError as exc:
            raise CapabilityError(f"no reply: {exc}", path=self._where) from exc
        if not line or len(line) > MAX_LINE:
            raise CapabilityError("connection closed or reply line too long", path=self._where)
        try:
            reply = json.loads(line)
        except ValueError as exc:
            raise CapabilityError(f"reply is not JSON: {exc}", path=self._where) from exc
        if not isinstance(reply, dict):
            raise CapabilityError(f"expected a JSON object, got {reply!r:.80}", path=self._where)
        return reply

    def close(self) -> None:
        """Close the connection."""
        self._file.close()
        self._sock.close()

    def __enter__(self) -> SocketEndpoint:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class QemuEndpoint:
    """A real QEMU seen as an :class:`Endpoint`; what is agreed is applied to QEMU for real.

    ``query-migration-capabilities`` answers QEMU's own ``query-migrate-capabilities`` (every
    listed name is a supported bit in 32-63, every ``state: true`` an enabled one) joined with
    the seed's ``query-migration-capabilities`` for bits 0-31 where QEMU has that command
    (absent -- every QEMU today -- is 0: this QEMU speaks only its own stream).
    ``set-migration-capabilities`` applies a mask: ``migrate-set-capabilities`` turns each
    listed capability on or off as the mask says (only those whose state changes are sent),
    the seed's set command takes bits 0-31 where QEMU has it, and QEMU is queried again to
    prove the states now match; a mismatch is an error reply.  Every other command goes to
    QEMU unchanged, so a command QEMU lacks still answers ``CommandNotFound``.

    Args:
        qmp: a connected QMP client with ``cmd_raw(name, args)`` returning the raw reply,
            e.g. ``qemu.qmp.legacy.QEMUMonitorProtocol``.

    Attributes:
        enabled: the mask QEMU reported enabled after the last set (None before one).
    """

    def __init__(self, qmp: Any) -> None:
        self._qmp = qmp
        self.enabled: int | None = None

    def execute(self, command: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """Answer the capability commands from QEMU (applying a set); pass others through."""
        if command == QUERY:
            return self._query()
        if command == SET:
            return self._set((arguments or {}).get("capabilities"))
        return self._qmp.cmd_raw(command, dict(arguments) if arguments is not None else None)

    def _query(self) -> Any:
        listed = self._qmp.cmd_raw("query-migrate-capabilities")
        if isinstance(listed, Mapping) and "error" in listed:
            return listed
        supported, enabled = from_qemu_capabilities(listed), _enabled(listed)
        own = self._qmp.cmd_raw(QUERY)  # the seed's command: no QEMU has it yet
        if isinstance(own, Mapping) and "return" in own:
            value = own["return"]
            supported |= int(value.get("capabilities", 0)) & MIGLAB_BLOCK
            enabled |= int(value.get("enabled", 0)) & MIGLAB_BLOCK
        elif not _not_found(own):
            return own
        return {"return": {"capabilities": supported, "enabled": enabled}}

    def _set(self, mask: Any) -> Any:
        query = self._query()
        if "error" in query:
            return query
        supported = query["return"]["capabilities"]
        if not isinstance(mask, int) or isinstance(mask, bool) or mask < 0 or mask & ~supported:
            return error_reply("GenericError", f"capabilities must be a subset of {supported:#x}")
        listed = self._qmp.cmd_raw("query-migrate-capabilities")["return"]
        changes = [
            {"capability": entry["capability"], "state": want}
            for entry in listed
            if (bit := CAPABILITIES.get(entry["capability"])) is not None
            and (want := bool(mask >> bit & 1)) != bool(entry.get("state"))
        ]
        if changes:
            reply = self._qmp.cmd_raw("migrate-set-capabilities", {"capabilities": changes})
            if "error" in reply:
                return reply
        if supported & MIGLAB_BLOCK:  # the seed's own set, where this QEMU has it
            reply = self._qmp.cmd_raw(SET, {"capabilities": mask & MIGLAB_BLOCK})
            if "error" in reply:
                return reply
        after = self._query()
        if "error" in after:
            return after
        self.enabled = after["return"]["enabled"]
        if self.enabled & supported != mask:
            return error_reply(
                "GenericError",
                f"QEMU did not apply the capabilities: asked {mask:#x}, enabled {self.enabled:#x}",
            )
        return {"return": {}}


def _enabled(reply: Any) -> int:
    """The mask of the capabilities a ``query-migrate-capabilities`` reply has turned on."""
    entries = reply["return"] if isinstance(reply, Mapping) else reply
    return from_qemu_capabilities([e for e in entries if e.get("state") is True])


def _not_found(reply: Any) -> bool:
    error = reply.get("error") if isinstance(reply, Mapping) else None
    return isinstance(error, Mapping) and error.get("class") == "CommandNotFound"
