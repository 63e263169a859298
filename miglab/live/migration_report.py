"""What :func:`miglab.live.migrate.migrate` reports: the two QEMUs and the move, as text.

A :class:`MigrationReport` is a frozen record of one live move through miglab -- the two
QEMUs as each described itself (:class:`QemuSide`), the capability masks offered, agreed and
applied, QEMU's own time and byte figures, the proxy's changes -- and renders itself as the
lines ``miglab migrate`` prints.  It is apart from the code that drives QMP so that a reader
of the outcome (the CLI, a notebook, a test) needs none of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from miglab.capabilities import choose_encoder, names_of
from miglab.live.proxy import ProxySummary

__all__ = ("MigrationReport", "QemuSide")


@dataclass(frozen=True, slots=True)
class QemuSide:
    """What one QEMU said about itself, and what it was left with.

    Attributes:
        role: ``"source"`` or ``"destination"``.
        address: its QMP address.
        version: QEMU's full version (``"7.2.22"``).
        release: ``major.minor`` (``"7.2"``), as miglab names builds.
        machine: the machine type it runs (``"pc-q35-7.2"``).
        machines: every machine type the build knows.
        supported: capability mask it supports (QEMU's names in bits 32-63).
        enabled: capability mask it reported enabled after the set (re-queried).
        run_state: its ``query-status`` after the migration (``"exited"`` when gone).
    """

    role: str
    address: str
    version: str
    release: str
    machine: str
    machines: tuple[str, ...]
    supported: int
    enabled: int = 0
    run_state: str = ""


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """The outcome of :func:`migrate`.

    Attributes:
        source, destination: the two QEMUs (:class:`QemuSide`).
        offered: miglab's own mask (what the live path supports, minus what was turned off).
        agreed: the intersection, applied on both QEMUs.
        transforms: whether the proxy ran ``miglab.compat`` (the ``compat-transforms`` bit).
        proxied: whether the stream went through miglab's proxy.
        status: ``"completed"`` or ``"failed"``.
        error: QEMU's own error text (source's, then destination's), empty on success.
        total_ms: QEMU's ``total-time`` on the source.
        downtime_ms: QEMU's ``downtime`` on the source (guest stopped until the source finished).
        resumed_ms: from the source completing to the destination running (miglab's clock).
        bytes: bytes the source sent (the proxy's count when proxied, else QEMU's).
        passes: RAM passes (QEMU's ``dirty-sync-count``).
        xbzrle_pages: RAM pages the source sent as XBZRLE deltas (0 unless xbzrle was agreed).
        changes: the proxy's change report lines (empty when nothing changed).
        options: destination options the proxy's conversion asked for (``-global ...``); a
            destination started without them sees a device other than the guest's.
        proxy: the proxy's summary (None when not proxied).
    """

    source: QemuSide
    destination: QemuSide
    offered: int
    agreed: int
    transforms: bool
    proxied: bool
    status: str
    error: str = ""
    total_ms: int | None = None
    downtime_ms: int | None = None
    resumed_ms: float | None = None
    bytes: int = 0
    passes: int = 0
    xbzrle_pages: int = 0
    changes: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    proxy: ProxySummary | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        """True iff the destination runs the guest now."""
        return self.status == "completed" and self.destination.run_state == "running"

    def lines(self) -> list[str]:
        """The report as text lines (what ``miglab migrate`` prints)."""
        src, dst = self.source, self.destination
        out = [
            f"source       QEMU {src.version} {src.machine} at {src.address}",
            f"destination  QEMU {dst.version} {dst.machine} at {dst.address}",
            f"offered      {', '.join(names_of(self.offered)) or '-'}",
            f"agreed       {', '.join(names_of(self.agreed)) or '-'} "
            f"(encoder {choose_encoder(self.agreed)})",
            f"applied      source {', '.join(names_of(src.enabled)) or '-'}; "
            f"destination {', '.join(names_of(dst.enabled)) or '-'}",
            f"path         {'miglab proxy' if self.proxied else 'direct'}"
            + (f", compat transforms {'on' if self.transforms else 'off'}" if self.proxied else ""),
            f"status       {self.status}",
        ]
        if self.error:
            out.append(f"error        {self.error}")
        if self.status == "completed":
            out.append(
                f"time         total {self.total_ms} ms, downtime {self.downtime_ms} ms, "
                f"running again after {self.resumed_ms:.0f} ms"
                if self.resumed_ms is not None
                else f"time         total {self.total_ms} ms, downtime {self.downtime_ms} ms"
            )
            out.append(
                f"sent         {self.bytes} bytes in {self.passes} RAM passes, "
                f"{self.xbzrle_pages} pages as XBZRLE deltas"
            )
        out.append(f"changes      {len(self.changes)}")
        out.extend(f"  {line}" for line in self.changes)
        if self.options:
            out.append(f"needs        {' '.join(self.options)} on the destination")
        out.append(f"left         source {src.run_state}, destination {dst.run_state}")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())
