"""The one error hierarchy of miglab.

Every failure a caller can act on is a :class:`MiglabError`.  Errors about
bytes say *where* (``offset``, the byte position in the input) and errors
about trees say *which member* (``path``, e.g. ``e1000/mac_reg[3]``); the
message always says what was expected.  Stdlib bases are mixed in where they
are natural so callers can catch what they already know (``ValueError``,
``EOFError``, ``KeyError``).

    MiglabError
    ├── MigrationFormatError (ValueError)     bad or unexpected bytes in a stream
    │   └── TruncatedStreamError (EOFError)   the input ended early
    ├── VisitorError (ValueError)             a visitor could not read/write a member
    ├── DescriptionError (ValueError)         a VMState description or schema is unusable
    │   └── DescriptionLimitExceeded          ... because it exceeds a safety limit (also a LimitExceeded)
    ├── EncodingError (ValueError)            an encoder or decoder failed
    ├── CompatError                           a transform could not be planned or applied
    ├── CapabilityError                       capability negotiation failed
    ├── LiveError                             a live migration through miglab failed
    │   └── AddressError (ValueError)         a socket address text is not tcp:/unix:
    ├── NotFoundError (KeyError)              a named device, member or block is not there
    ├── KnowledgeError (ValueError)           a file of miglab/knowledge/ is malformed
    ├── FileError (OSError)                   a file or directory cannot be read or written
    └── LimitExceeded (MigrationFormatError)  input exceeds a configured safety limit
"""

from __future__ import annotations

__all__ = (
    "AddressError",
    "CapabilityError",
    "CompatError",
    "DescriptionError",
    "DescriptionLimitExceeded",
    "EncodingError",
    "FileError",
    "KnowledgeError",
    "LimitExceeded",
    "LiveError",
    "MiglabError",
    "MigrationFormatError",
    "NotFoundError",
    "TruncatedStreamError",
    "VisitorError",
)


class MiglabError(Exception):
    """Root of every error miglab raises on purpose.

    Args:
        message: what went wrong and what was expected.
        offset: byte offset in the input where it went wrong, if known.
        path: member path in the object tree (``"serial/lsr"``), if known.
    """

    def __init__(self, message: str, *, offset: int | None = None, path: str | None = None):
        self.message = message
        self.offset = offset
        self.path = path
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.path:
            where.append(self.path)
        if self.offset is not None:
            where.append(f"at offset {self.offset} (0x{self.offset:x})")
        return f"{': '.join([' '.join(where), self.message]) if where else self.message}"


class MigrationFormatError(MiglabError, ValueError):
    """The bytes are not a valid migration stream (or encoded tree) at ``offset``."""


class TruncatedStreamError(MigrationFormatError, EOFError):
    """The input ended before a complete record could be read."""


class LimitExceeded(MigrationFormatError):
    """A length, count or depth in the input exceeds a configured safety limit."""


class VisitorError(MiglabError, ValueError):
    """A visitor could not read or write a member (type, range, missing member)."""


class DescriptionError(MiglabError, ValueError):
    """A VMState description, vmdesc or ``-dump-vmstate`` schema is unusable."""


class DescriptionLimitExceeded(LimitExceeded, DescriptionError):
    """A description or ``-dump-vmstate`` schema is larger or deeper than a safety limit.

    Both a :class:`LimitExceeded` and a :class:`DescriptionError`, so a caller catching
    either (a hostile-input guard, a schema loader's caller) sees it.
    """


class EncodingError(MiglabError, ValueError):
    """An encoder could not encode a tree, or a decoder could not decode bytes."""


class CompatError(MiglabError):
    """A compat transform could not be planned or applied."""


class CapabilityError(MiglabError):
    """Migration capability negotiation failed."""


class LiveError(MiglabError):
    """A live migration through miglab failed (a socket closed, a peer refused, a timeout)."""


class AddressError(LiveError, ValueError):
    """A socket address is not ``tcp:HOST:PORT`` or ``unix:PATH``."""


class NotFoundError(MiglabError, KeyError):
    """A device, member or block asked for by name is not there (a ``KeyError``)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self._render()


class KnowledgeError(MiglabError, ValueError):
    """A file of ``miglab/knowledge/`` is malformed (say, after a hand edit).

    ``file`` names it (``compat-qemu.json``) and ``path`` is the JSON path of the member
    that is missing, unknown, of the wrong type or inconsistent (``$.qemu.10.0.machines``).
    """

    def __init__(self, message: str, *, file: str, path: str):
        self.file = file
        super().__init__(message, path=path)

    def _render(self) -> str:
        return f"miglab/knowledge/{self.file} at {self.path}: {self.message}"


class FileError(MiglabError, OSError):
    """A file or directory cannot be read or written; ``path`` names it.

    An ``OSError`` too, with the ``errno`` of the failure when there is one.
    """

    def __init__(self, message: str, *, path: str | None = None, errno: int | None = None):
        super().__init__(message, path=path)
        self.errno = errno

    def __str__(self) -> str:  # OSError would render its own (errno, strerror) pair
        return self._render()
