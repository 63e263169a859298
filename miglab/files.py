"""The one way miglab writes a file the user sees.

Every output (``save``, ``convert``, ``compat``, ``extract``, ``export-elf``,
a qcow2 image written back, the CLI) goes through this module, so three
promises hold everywhere:

* **No planted link is followed.**  The output's directory is opened once
  (``O_DIRECTORY``; ``O_NOFOLLOW`` too for a directory miglab makes or fills,
  such as ``extract``'s), and each file is created in it under a fresh
  temporary name with ``O_CREAT | O_EXCL | O_NOFOLLOW``, then renamed over
  its final name.  A symlink or hard link planted under that name is
  replaced as a directory entry; the file it points to is never opened.
* **The user's files are never truncated.**  Nothing is opened for writing
  that already exists: an output named like the input (or a link to it)
  leaves the input whole until the new file is complete, fsynced and
  renamed; a failed write removes the temporary file and leaves every old
  file as it was.
* **Output is budgeted.**  Every byte is charged to one
  :class:`~miglab.limits.OutputBudget` (grown with the input's size) before
  it is written, so a hostile input cannot make miglab write without end.

:func:`atomic_output` gives one file; :func:`output_directory` a directory
of new files committed together (``extract``); :func:`staging_file` an
unlinked scratch file for an output made in two steps (the plain stream a
compressor reads), charged to the same budget as the output.  All hand out
:class:`OutputFile`: its ``write``, ``pwrite`` and ``pwritev`` charge the
budget, and a caller that builds a page before writing it (``extract``)
calls ``charge`` first.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from miglab.errors import FileError
from miglab.limits import OutputBudget

__all__ = (
    "OutputDirectory",
    "OutputFile",
    "atomic_output",
    "output_directory",
    "pwrite",
    "pwritev",
    "staging_file",
)

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


class OutputFile(io.FileIO):
    """A new, unbuffered output file whose every write is charged to its budget first."""

    def __init__(self, fd: int, budget: OutputBudget, path: str) -> None:
        super().__init__(fd, "r+b", closefd=True)
        self.budget, self.path = budget, path

    def charge(self, n: int) -> None:
        """Charge ``n`` bytes about to be written another way (``os.pwrite`` of a page
        built or read first: charged before it is built)."""
        self.budget.charge(n, path=self.path)

    def write(self, data: Any, /) -> int:
        """Write all of ``data`` at the current position (no short writes)."""
        view = memoryview(data).cast("B")
        self.budget.charge(len(view), path=self.path)
        done = 0
        while done < len(view):
            n = super().write(view[done:])
            done += n or 0
        return done

    def pwrite(self, data: Any, offset: int) -> None:
        """Write all of ``data`` at ``offset`` (the file position does not move)."""
        view = memoryview(data).cast("B")
        self.budget.charge(len(view), path=self.path)
        done = 0
        while done < len(view):
            done += os.pwrite(self.fileno(), view[done:], offset + done)

    def pwritev(self, buffers: Sequence[Any], offset: int) -> None:
        """Write ``buffers`` one after another from ``offset``."""
        total = sum(memoryview(b).nbytes for b in buffers)
        self.budget.charge(total, path=self.path)
        done = os.pwritev(self.fileno(), buffers, offset)
        if done < total:  # a short write: finish it
            rest = memoryview(b"".join(bytes(b) for b in buffers))
            while done < total:
                done += os.pwrite(self.fileno(), rest[done:], offset + done)


def pwrite(out: Any, data: Any, offset: int) -> None:
    """``out.pwrite`` for an :class:`OutputFile`; a plain ``os.pwrite`` for a scratch file."""
    if isinstance(out, OutputFile):
        out.pwrite(data, offset)
    else:
        os.pwrite(out.fileno(), data, offset)


def pwritev(out: Any, buffers: Sequence[Any], offset: int) -> None:
    """``out.pwritev`` for an :class:`OutputFile`; a plain ``os.pwritev`` for a scratch file."""
    if isinstance(out, OutputFile):
        out.pwritev(buffers, offset)
    else:
        os.pwritev(out.fileno(), buffers, offset)


class OutputDirectory:
    """A directory, opened without following links, in which new files are made.

    Files made with :meth:`new_file` get their final names only when
    :meth:`commit` is called; until then (and if it never is) they live under
    temporary names and are removed on close.
    """

    def __init__(self, path: Path, budget: OutputBudget, fd: int) -> None:
        self.path, self.budget, self.fd = path, budget, fd
        self._pending: list[tuple[int, str, str, OutputFile]] = []
        self._dirs: list[int] = []

    def subdir(self, name: str) -> OutputDirectory:
        """The subdirectory ``name`` (made if missing; refused if it is a symlink)."""
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o755, dir_fd=self.fd)
        sub = OutputDirectory(self.path / name, self.budget, _open_dir(self.path / name, self.fd))
        sub._pending, sub._dirs = self._pending, self._dirs  # one commit for the whole tree
        self._dirs.append(sub.fd)
        return sub

    def new_file(self, name: str) -> OutputFile:
        """A new empty file that becomes ``name`` on :meth:`commit`."""
        tmp, fd = _create_temporary(self.fd, name, self.path / name)
        out = OutputFile(fd, self.budget, str(self.path / name))
        self._pending.append((self.fd, tmp, name, out))
        return out

    def commit(self) -> None:
        """fsync every new file, rename each over its final name, fsync the directories."""
        for dir_fd, tmp, name, out in self._pending:
            out.flush()
            os.fsync(out.fileno())
            out.close()
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        self._pending.clear()
        for fd in {self.fd, *self._dirs}:
            os.fsync(fd)

    def close(self) -> None:
        """Remove what was not committed and close the directories."""
        for dir_fd, tmp, _, out in self._pending:
            out.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
        self._pending.clear()
        for fd in self._dirs:
            os.close(fd)
        self._dirs.clear()
        os.close(self.fd)


@contextlib.contextmanager
def output_directory(
    path: str | os.PathLike[str], *, input_bytes: int | None
) -> Iterator[OutputDirectory]:
    """``path`` (made if missing, refused if it is a symlink) to fill with new files.

    The files made inside become visible only when the ``with`` block calls
    :meth:`OutputDirectory.commit`; on an error they are removed.

    Raises:
        FileError: the directory cannot be made, opened or written.
        LimitExceeded: more output than ``input_bytes`` allows.
    """
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FileError(
            f"cannot make the directory: {exc.strerror}", path=str(out), errno=exc.errno
        ) from None
    d = OutputDirectory(out, OutputBudget(input_bytes), _open_dir(out))
    try:
        yield d
    except OSError as exc:
        if isinstance(exc, FileError):
            raise
        raise FileError(
            f"cannot write: {exc.strerror or exc}", path=str(out), errno=exc.errno
        ) from None
    finally:
        d.close()


@contextlib.contextmanager
def atomic_output(
    path: str | os.PathLike[str], *, input_bytes: int | None = None
) -> Iterator[OutputFile]:
    """A new file that replaces ``path`` only if the ``with`` block succeeds.

    Args:
        path: the output; whatever entry has this name (a file, the input
            itself, a symlink, a hard link) is replaced, never written through.
        input_bytes: size of the input the output is made from
            (``Stream.source_size``), which sets the output budget; None for
            output of a tree built in Python (no budget).

    Raises:
        FileError: the file cannot be created or written (``errno`` set).
        LimitExceeded: more output than ``input_bytes`` allows.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        dir_fd = os.open(directory, os.O_RDONLY | _DIRECTORY)
    except OSError as exc:
        raise FileError(
            f"cannot write a file here: {exc.strerror}", path=str(target), errno=exc.errno
        ) from None
    try:
        tmp, fd = _create_temporary(dir_fd, target.name, target)
        try:
            with OutputFile(fd, OutputBudget(input_bytes), str(target)) as out:
                yield out
                os.fsync(out.fileno())
            os.replace(tmp, target.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.fsync(dir_fd)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
            if isinstance(exc, OSError) and not isinstance(exc, FileError):
                raise FileError(
                    f"cannot write: {exc.strerror or exc}", path=str(target), errno=exc.errno
                ) from None
            raise
    finally:
        os.close(dir_fd)


def staging_file(out: Any) -> OutputFile:
    """An unlinked scratch file whose writes are charged to ``out``'s budget.

    For an output made in two steps (a compressed stream is written plain,
    then compressed into ``out``): both steps spend the one budget, so
    neither can be made to write without end.  ``out`` not an
    :class:`OutputFile` (a caller's own file object) gives an unlimited budget.
    """
    budget = out.budget if isinstance(out, OutputFile) else OutputBudget(None)
    shown = out.path if isinstance(out, OutputFile) else "(staging)"
    with tempfile.TemporaryFile(prefix="miglab-") as fh:  # unlinked at once (O_TMPFILE)
        fd = os.dup(fh.fileno())
    return OutputFile(fd, budget, shown)


def _open_dir(path: Path, parent: int | None = None) -> int:
    """Directory ``path`` (its last part, relative to ``parent`` if given), not followed if a symlink."""
    flags = os.O_RDONLY | _DIRECTORY | _NOFOLLOW
    try:
        return os.open(path.name if parent is not None else path, flags, dir_fd=parent)
    except OSError as exc:
        raise FileError(
            f"cannot write into this directory: {exc.strerror}", path=str(path), errno=exc.errno
        ) from None


def _create_temporary(dir_fd: int, name: str, shown: Path) -> tuple[str, int]:
    """A new file beside ``name`` in ``dir_fd`` under a name nobody else has: (name, fd)."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    for attempt in range(100):
        tmp = f".{name[:200]}.{os.getpid()}.{attempt}.tmp"
        try:
            return tmp, os.open(tmp, flags, 0o644, dir_fd=dir_fd)
        except FileExistsError:
            continue
        except OSError as exc:
            raise FileError(
                f"cannot write a file here: {exc.strerror}", path=str(shown), errno=exc.errno
            ) from None
    raise FileError("cannot find a free temporary name", path=str(shown))
