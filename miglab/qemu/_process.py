"""One QEMU process with a QMP socket, and the QMP steps miglab drives it through.

A :class:`Guest` owns a private temp dir (QMP socket, captured stderr, scratch files) and a
QEMU started in its own process group; closing it kills the whole group (QEMU and the ``cat``
of an ``exec:`` migration) and removes the dir, so no error or timeout leaves anything behind.

The QMP side is asyncio (``qemu.qmp.QMPClient``); :func:`run_bounded` runs one coroutine to
completion under a deadline from synchronous code, also inside a notebook whose event loop is
already running (there it uses a worker thread, as ``asyncio.run`` cannot nest).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from qemu.qmp import ConnectError, QMPClient, QMPError

from miglab.errors import MiglabError

__all__ = (
    "QMP_LOST",
    "Guest",
    "GuestExited",
    "QemuError",
    "QemuTimeout",
    "drop",
    "private_event_loop",
    "quit_qemu",
    "run_bounded",
    "wait_migration",
)

_T = TypeVar("_T")

#: Seconds between two ``query-migrate`` polls (and between QMP connect attempts).
POLL_SECONDS = 0.02
#: Seconds allowed for ``quit`` and for closing the QMP connection.
GOODBYE_SECONDS = 2.0
#: Migration states after which QEMU will not change the status on its own.
END_STATES = frozenset({"completed", "failed", "cancelled"})
#: What a QMP call raises when QEMU goes away under it (it exits on a bad incoming stream).
QMP_LOST = (QMPError, OSError, EOFError)


class QemuError(MiglabError, RuntimeError):
    """QEMU failed to start, to migrate, or to dump its schema; the message carries its stderr."""


class QemuTimeout(QemuError, TimeoutError):
    """A QEMU run did not finish within its time budget (the process was killed)."""


class GuestExited(QemuError):
    """QEMU exited before the QMP conversation finished."""


class Guest:
    """A QEMU process started with ``-qmp unix:SOCK``, owned by a ``with`` block.

    Args:
        argv: the full QEMU command line without the ``-qmp`` option.
        env: extra environment for QEMU (merged over ``os.environ``).
    """

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="miglab-qemu-")
        self.dir = Path(self._tmp.name)
        self.qmp_socket = self.dir / "qmp.sock"
        self._stderr = (self.dir / "stderr").open("w+b")
        try:
            self.process = subprocess.Popen(
                [*argv, "-qmp", f"unix:{self.qmp_socket},server=on,wait=off"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
                env={**os.environ, **env},
                start_new_session=True,  # its own group, so close() also reaps exec:cat
            )
        except OSError as exc:
            self._cleanup()
            raise QemuError(f"cannot start {argv[0]}: {exc}") from exc

    def __enter__(self) -> Guest:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def stderr(self) -> str:
        """Return what QEMU wrote to stderr so far."""
        self._stderr.flush()
        return (self.dir / "stderr").read_text(errors="replace")

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for QEMU to exit; return its status or None."""
        try:
            return self.process.wait(timeout=max(timeout, 0))
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Kill QEMU's process group (QEMU and any exec:cat child) and remove the temp dir."""
        with contextlib.suppress(ProcessLookupError):  # QEMU and its children are gone
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        self._stderr.close()
        self._tmp.cleanup()

    async def connect(self) -> QMPClient:
        """Connect to QEMU's QMP socket, retrying until it is up.

        Raises:
            GuestExited: QEMU exited before the socket accepted a connection.
        """
        while True:
            if self.process.poll() is not None:
                raise GuestExited(f"QEMU exited with status {self.process.returncode}")
            qmp = QMPClient("miglab")
            try:
                await qmp.connect(str(self.qmp_socket))
            except (ConnectError, AssertionError):
                # qemu.qmp can trip its own state assertions when the socket is
                # accepted but the greeting is not complete yet (seen under load);
                # a fresh client on the next poll connects cleanly.  The failed
                # client may hold a half-open socket: close it first.
                await drop(qmp)
                await asyncio.sleep(POLL_SECONDS)
            else:
                return qmp


async def wait_migration(qmp: QMPClient) -> tuple[str, str]:
    """Poll ``query-migrate`` until an end state; return ``(status, error-desc)``."""
    while True:
        info = await qmp.execute("query-migrate")
        assert isinstance(info, dict)
        status = str(info.get("status", "none"))
        if status in END_STATES:
            return status, str(info.get("error-desc", ""))
        await asyncio.sleep(POLL_SECONDS)


async def drop(qmp: QMPClient) -> None:
    """Close the QMP connection, ignoring that QEMU may already have dropped it.

    Bounded on its own, as it also runs while a timed-out call is being cancelled.
    """
    try:
        await asyncio.wait_for(qmp.disconnect(), GOODBYE_SECONDS)
    except (*QMP_LOST, TimeoutError):  # disconnect() re-raises what ended the session
        pass


async def quit_qemu(qmp: QMPClient) -> None:
    """Ask QEMU to quit and drop the connection; QEMU may close it before replying."""
    try:
        await asyncio.wait_for(qmp.execute("quit"), GOODBYE_SECONDS)
    except (*QMP_LOST, TimeoutError):
        pass
    await drop(qmp)


def run_bounded(coro: Coroutine[Any, Any, _T], timeout: float, what: str) -> _T:
    """Run ``coro`` to completion within ``timeout`` seconds, from synchronous code.

    Raises:
        QemuTimeout: the deadline passed (the coroutine is cancelled).
    """

    async def bounded() -> _T:
        return await asyncio.wait_for(coro, timeout)

    try:
        asyncio.get_running_loop()
        in_loop = True
    except RuntimeError:
        in_loop = False
    try:
        if not in_loop:
            return asyncio.run(bounded())
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, bounded()).result()
    except TimeoutError as exc:
        raise QemuTimeout(f"{what} did not finish within {timeout:g} s") from exc


@contextlib.contextmanager
def private_event_loop() -> Iterator[None]:
    """Run ``qemu.qmp``'s synchronous clients (``qemu.qmp.legacy``) on a loop closed afterwards.

    ``QEMUMonitorProtocol`` runs on the thread's current event loop, making one when there
    is none, and never closes it: the loop and its self-pipe leak once ``asyncio.run``
    replaces it or the thread ends.  Only for code that runs outside any running loop.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield
    finally:
        asyncio.set_event_loop(None)
        loop.close()
