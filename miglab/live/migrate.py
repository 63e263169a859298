"""``miglab migrate``: the management side of a live migration, with capabilities applied.

Given the QMP addresses of a running source QEMU and of a destination QEMU waiting with
``-incoming defer``, :func:`migrate` does what a management layer does, with miglab in the
path when the two are different releases:

1. query both: version, current machine type, the machine types the build knows, QEMU's
   ``query-migrate-capabilities`` and the seed's ``query-migration-capabilities`` where an
   endpoint has it (absent, as on every QEMU today: mask 0 in miglab's bits 0-31);
2. negotiate (:func:`miglab.capabilities.negotiate`) between the two QEMUs and what miglab's
   live path supports (:data:`~miglab.capabilities.LIVE_SUPPORTS`, minus what the caller turns
   off): the intersection is **applied** on both QEMUs with ``migrate-set-capabilities``
   (everything else listed is turned off) and each is queried again to prove it;
3. when the proxy will convert the stream, check the destination options the conversion
   asks for against the running destination (:mod:`miglab.live.destination_options`),
   refusing it before step 2 sets anything on either QEMU;
4. start the destination's incoming side on a private socket;
5. when the releases differ (``proxy="auto"``), run :func:`miglab.live.proxy.proxy_once`
   between them; ``compat-transforms`` is the proxy's own bit: without it the proxy forwards
   the stream unchanged (as from a source of the destination's release);
6. migrate, wait, resume the destination (``cont``) and report: total time and downtime (QEMU's
   own figures), how long the guest took to run again on the destination, bytes, RAM passes,
   the proxy's changes -- or, when it failed, QEMU's own error text from both ends and the run
   state the source is left in (QEMU resumes a source whose migration failed); the report's
   types and their text are :mod:`miglab.live.migration_report`.

A failed destination is left as a release without ``exit-on-error`` leaves it: gone.  Where
the destination has ``exit-on-error`` (QEMU 9.1 and newer) it is kept long enough to read its
``error-desc``, then told to quit.  A source QEMU resumes its guest by itself when its own side
fails; when the source completed and the destination then failed (the proxy or the destination
refused the end of the stream), the source is paused in ``postmigrate`` with the guest running
nowhere, so miglab resumes it (``cont``), as libvirt does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from qemu.qmp.legacy import QEMUMonitorProtocol

from miglab.capabilities import LIVE_SUPPORTS, LocalEndpoint, mask_of, negotiate, transforms_enabled
from miglab.capabilities_endpoints import QemuEndpoint
from miglab.compat.report import ChangeReport
from miglab.errors import LiveError
from miglab.live.address import Address, parse_address
from miglab.live.destination_options import missing_options
from miglab.live.migration_report import MigrationReport, QemuSide
from miglab.live.proxy import ProxySummary, proxy_once
from miglab.qemu._process import END_STATES, QMP_LOST, private_event_loop

__all__ = ("MigrateError", "migrate")

ProxyMode = Literal["auto", "never", "always"]
#: Seconds between two ``query-migrate`` polls.
POLL = 0.05
#: Seconds a QMP command may take.
QMP_TIMEOUT = 30.0
#: Seconds the far end gets to reach its end state after the source's.
SETTLE = 30.0
#: The first release whose ``migrate-incoming`` takes ``exit-on-error``.
EXIT_ON_ERROR_SINCE = (9, 1)


class MigrateError(LiveError):
    """The migration could not be set up (an endpoint unreachable or not ready)."""


def _qmp_target(address: Address) -> Any:
    """What ``QEMUMonitorProtocol`` connects to: ``(host, port)`` or a socket path."""
    if address.kind == "tcp":
        return (address.host, address.port)
    return str(address.path)


class _Monitor:
    """One QMP connection (``qemu.qmp``'s synchronous client) to a QEMU miglab does not own."""

    def __init__(self, role: str, address: str) -> None:
        self.role, self.address = role, address
        self.qmp = QEMUMonitorProtocol(_qmp_target(parse_address(address)))
        try:
            self.qmp.connect()
        except (*QMP_LOST, ConnectionError) as exc:
            raise MigrateError(f"cannot reach the {role}'s QMP at {address}: {exc}") from exc
        self.qmp.settimeout(QMP_TIMEOUT)
        self.alive = True

    def cmd(self, name: str, args: dict[str, Any] | None = None) -> Any:
        """``return`` of ``name``; raises MigrateError with QEMU's text on an error reply."""
        reply = self.raw(name, args)
        if "error" in reply:
            raise MigrateError(f"{self.role} refused {name}: {reply['error'].get('desc')}")
        return reply["return"]

    def raw(self, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """The raw reply; ``{"error": {"class": "Exited"...}}`` once QEMU went away."""
        if not self.alive:
            return {"error": {"class": "Exited", "desc": f"{self.role} QEMU exited"}}
        try:
            return dict(self.qmp.cmd_raw(name, args))
        except QMP_LOST:
            self.alive = False
            return {"error": {"class": "Exited", "desc": f"{self.role} QEMU exited"}}

    def run_state(self) -> str:
        reply = self.raw("query-status")
        return str(reply["return"]["status"]) if "return" in reply else "exited"

    def close(self) -> None:
        with contextlib.suppress(*QMP_LOST):
            self.qmp.close()


def _describe(monitor: _Monitor, endpoint: QemuEndpoint) -> QemuSide:
    version = monitor.cmd("query-version")["qemu"]
    machine = str(monitor.cmd("qom-get", {"path": "/machine", "property": "type"}))
    machines = tuple(sorted(str(m["name"]) for m in monitor.cmd("query-machines")))
    query = endpoint.execute("query-migration-capabilities")
    return QemuSide(
        monitor.role,
        monitor.address,
        f"{version['major']}.{version['minor']}.{version['micro']}",
        f"{version['major']}.{version['minor']}",
        machine.removesuffix("-machine"),
        machines,
        int(query["return"]["capabilities"]),
    )


def migrate(
    source: str,
    destination: str,
    *,
    proxy: ProxyMode = "auto",
    without: Iterable[str] = (),
    allow_guest_visible: bool = False,
    bandwidth: int | None = None,
    incoming: str | None = None,
    via: str | None = None,
    timeout: float = 300.0,
) -> MigrationReport:
    """Move the running VM behind QMP ``source`` to the QEMU waiting behind ``destination``.

    Args:
        source: QMP address of the running source (``unix:PATH`` or ``tcp:HOST:PORT``).
        destination: QMP address of a QEMU started with ``-incoming defer``.
        proxy: ``"auto"`` (through miglab's proxy when the releases differ), ``"never"``,
            ``"always"``.
        without: capability names to turn off in miglab's offer (e.g. ``"xbzrle"``,
            ``"compat-transforms"``).
        allow_guest_visible: let the proxy make changes the guest can see (passed through).
        bandwidth: ``max-bandwidth`` (bytes/s) for the source; default QEMU's.
        incoming: where the destination listens (default a socket in a private temp dir).
        via: the address of a proxy the caller runs (``miglab proxy --once``, forwarding to
            ``incoming``): the source sends there and no proxy is started here.
        timeout: seconds for the whole migration.

    Raises:
        MigrateError: an endpoint is unreachable, the destination is not waiting for an
            incoming migration, or it was started without an option the proxy's conversion
            needs (the message names the option and the device).  A migration that fails
            is a report, not an exception.
        CapabilityError: a capability could not be applied or proven.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:  # qemu.qmp's synchronous client runs its own loop: not inside a running one
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(
                migrate, source, destination, proxy=proxy, without=without,
                allow_guest_visible=allow_guest_visible, bandwidth=bandwidth,
                incoming=incoming, via=via, timeout=timeout,
            ).result()  # fmt: skip
    offered = mask_of(LIVE_SUPPORTS) & ~mask_of(without)
    with private_event_loop():
        src = _Monitor("source", source)
        try:
            dst = _Monitor("destination", destination)
        except MigrateError:
            src.close()
            raise
        try:
            with tempfile.TemporaryDirectory(prefix="miglab-migrate-") as tmp:
                return _Migration(src, dst, offered, Path(tmp)).run(
                    proxy, allow_guest_visible, bandwidth, incoming, via, timeout
                )
        finally:
            src.close()
            dst.close()


class _Migration:
    """One run of :func:`migrate` (the state its steps share)."""

    def __init__(self, src: _Monitor, dst: _Monitor, offered: int, tmp: Path) -> None:
        self.src, self.dst, self.offered, self.tmp = src, dst, offered, tmp
        self.src_endpoint, self.dst_endpoint = QemuEndpoint(src.qmp), QemuEndpoint(dst.qmp)

    def run(
        self,
        proxy: ProxyMode,
        allow_guest_visible: bool,
        bandwidth: int | None,
        incoming: str | None,
        via: str | None,
        timeout: float,
    ) -> MigrationReport:
        if via is not None and incoming is None:
            raise MigrateError("an external proxy (via) needs the destination's address (incoming)")
        src_info = _describe(self.src, self.src_endpoint)
        dst_info = _describe(self.dst, self.dst_endpoint)
        if self.dst.run_state() != "inmigrate":
            raise MigrateError(
                f"the destination at {dst_info.address} is not waiting for a migration "
                f"(it is {self.dst.run_state()}; start it with -incoming defer)"
            )
        differ = src_info.release != dst_info.release
        proxied = via is not None or proxy == "always" or (proxy == "auto" and differ)
        transforms = transforms_enabled(self.offered)
        if proxied and transforms:
            self._check_options(src_info, dst_info)
        agreed = negotiate(self.src_endpoint, self.dst_endpoint, via=LocalEndpoint(self.offered))
        if bandwidth is not None:
            self.src.cmd("migrate-set-parameters", {"max-bandwidth": bandwidth})
        listen = incoming or f"unix:{self.tmp / 'incoming.sock'}"
        args: dict[str, Any] = {"uri": listen}
        version = tuple(int(p) for p in dst_info.release.split("."))
        keeps = version >= EXIT_ON_ERROR_SINCE
        if keeps:
            args["exit-on-error"] = False
        self.dst.cmd("migrate-incoming", args)
        runner = None
        target = via or listen
        if proxied and via is None:
            target = f"unix:{self.tmp / 'proxy.sock'}"
            runner = _ProxyThread(
                target,
                listen,
                src_qemu=src_info.release,
                to_qemu=dst_info.release if transforms else src_info.release,
                machine=dst_info.machine if transforms else src_info.machine,
                allow_guest_visible=allow_guest_visible,
                accept_timeout=timeout,  # a source that never comes does not leave it behind
            )
            runner.start(timeout)
        started = time.monotonic()
        self.src.cmd("migrate", {"uri": target})
        status, src_error, info, done_at = self._wait(self.src, started + timeout)
        dst_status, dst_error = self._settle(keeps)
        resumed_ms = None
        if status == "completed" and dst_status == "completed":
            if self.dst.run_state() != "running":
                self.dst.cmd("cont")
            deadline = time.monotonic() + SETTLE
            while self.dst.run_state() not in ("running", "exited"):
                if time.monotonic() > deadline:
                    break  # the report shows the state it is stuck in
                time.sleep(POLL)
            resumed_ms = (time.monotonic() - done_at) * 1000
        summary = runner.join(SETTLE) if runner else None
        errors = [f"source: {src_error}"] if src_error else []
        errors += [dst_error] if dst_error else []
        if summary is not None and summary.error:
            errors.append(f"proxy: {summary.error}")
        if dst_status != "completed" and status == "completed":
            status = "failed"
        if status != "completed" and keeps and self.dst.alive:
            self.dst.raw("quit")  # what a release without exit-on-error does by itself
            self.dst.alive = False
        if status != "completed" and self.src.run_state() == "postmigrate":
            # The source sent everything but the destination did not take it: the guest
            # runs nowhere.  The destination is gone, so the source may run it again.
            self.src.raw("cont")
        ram = info.get("ram", {})
        return MigrationReport(
            _final(src_info, self.src_endpoint, self.src),
            _final(dst_info, self.dst_endpoint, self.dst),
            self.offered,
            agreed,
            transforms,
            proxied,
            status,
            "; ".join(errors),
            info.get("total-time"),
            info.get("downtime"),
            resumed_ms,
            summary.bytes_in if summary is not None else int(ram.get("transferred", 0)),
            int(ram.get("dirty-sync-count", 0)),
            int(info.get("xbzrle-cache", {}).get("pages", 0)),
            tuple(_change_lines(summary)),
            tuple(summary.changes.options) if summary is not None and summary.changes else (),
            summary,
        )

    def _check_options(self, src_info: QemuSide, dst_info: QemuSide) -> None:
        """Refuse a destination started without the options the conversion will ask for
        (:func:`~miglab.live.destination_options.missing_options`)."""
        missing = missing_options(
            self.src, self.dst, src_info.machine, dst_info.machine, dst_info.release
        )
        if missing:
            raise MigrateError(
                f"the destination at {dst_info.address} was started without "
                f"{'an option' if len(missing) == 1 else 'options'} the conversion needs: "
                f"{'; '.join(missing)}; the guest's device would not be the one it knows. "
                "Start the destination with them; nothing was changed on either QEMU"
            )

    def _wait(self, monitor: _Monitor, deadline: float) -> tuple[str, str, dict[str, Any], float]:
        """Poll ``query-migrate`` to an end state: ``(status, error, info, when)``."""
        while True:
            reply = monitor.raw("query-migrate")
            if "error" in reply:
                return "failed", "QEMU exited during the migration", {}, 0.0
            info = reply["return"]
            status = str(info.get("status", "none"))
            if status in END_STATES:
                return status, str(info.get("error-desc", "")), info, time.monotonic()
            if time.monotonic() > deadline:
                monitor.raw("migrate_cancel")
                return "failed", "miglab migrate: timed out, migration cancelled", info, 0.0
            time.sleep(POLL)

    def _settle(self, keeps: bool) -> tuple[str, str]:
        """The destination's end state and error text, once it has one."""
        status, error, _, _ = self._wait(self.dst, time.monotonic() + SETTLE)
        if status != "completed" and not error:
            error = "QEMU exited (its stderr says why)"
        return status, (f"destination: {error}" if error and status != "completed" else "")


def _final(info: QemuSide, endpoint: QemuEndpoint, monitor: _Monitor) -> QemuSide:
    return QemuSide(
        info.role, info.address, info.version, info.release, info.machine, info.machines,
        info.supported, endpoint.enabled or 0, monitor.run_state(),
    )  # fmt: skip


def _change_lines(summary: ProxySummary | None) -> list[str]:
    return [] if summary is None else [str(change) for change in summary.changes]


class _ProxyThread:
    """:func:`proxy_once` in a thread; ``start`` returns once it listens."""

    def __init__(self, listen: str, connect: str, **options: Any) -> None:
        self._bound = threading.Event()
        self._result: ProxySummary | None = None
        self._failure: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(listen, connect, options), name="miglab-proxy", daemon=True
        )

    def _run(self, listen: str, connect: str, options: dict[str, Any]) -> None:
        try:
            self._result = proxy_once(
                parse_address(listen),
                parse_address(connect),
                ready=lambda _at: self._bound.set(),
                **options,
            )
        except BaseException as exc:  # reported in the summary, never lost in the thread
            self._failure = exc
        finally:
            self._bound.set()

    def start(self, timeout: float) -> None:
        self._thread.start()
        if not self._bound.wait(timeout) or self._failure is not None:
            raise MigrateError(f"the proxy did not start: {self._failure}")

    def join(self, timeout: float) -> ProxySummary | None:
        self._thread.join(timeout)
        if self._result is None and self._failure is not None:
            return ProxySummary(
                bytes_in=0, bytes_out=0, passes=0, changes=ChangeReport(), seconds=0.0,
                error=f"{type(self._failure).__name__}: {self._failure}",
            )  # fmt: skip
        return self._result
