"""XBZRLE page deltas (``migration/xbzrle.c``), checked and applied as QEMU's loader does.

With the ``xbzrle`` capability a page the source already sent, and sends again,
may travel as a delta over its previous copy (``RAM_SAVE_FLAG_XBZRLE``): after
the page word, ``u8 1`` (ENCODING_FLAG_XBZRLE), ``be16 len``, then ``len``
bytes of runs, each a ULEB128 count of unchanged bytes, a ULEB128 count of new
bytes, and the new bytes.  QEMU's ``xbzrle_decode_buffer`` is strict: counts are
one or two bytes (``uleb128_decode_small``), every run after the first skips at
least one byte, every data run carries at least one, nothing may pass the page
or the delta, and at least two bytes must remain wherever a count is read.
:func:`check_xbzrle` applies the same rules without the page (the stream
reader calls it on every delta), :func:`xbzrle_decode` applies a delta to the
previous copy.  Errors are :class:`~miglab.errors.MigrationFormatError` with
the offset of the offending byte in the input.
"""

from __future__ import annotations

from collections.abc import Iterator

from miglab.errors import MigrationFormatError

__all__ = ("ENCODING_FLAG_XBZRLE", "check_xbzrle", "xbzrle_decode", "xbzrle_runs")

ENCODING_FLAG_XBZRLE = 0x01


def _count(delta: bytes | memoryview, i: int, at: int, what: str) -> tuple[int, int]:
    """``uleb128_decode_small``: a 7- or 14-bit count and the index after it."""
    if len(delta) - i < 2:
        raise MigrationFormatError(
            f"XBZRLE delta ends where a {what} count needs two more bytes", offset=at + i
        )
    first = delta[i]
    if not first & 0x80:
        return first, i + 1
    second = delta[i + 1]
    if second & 0x80:
        raise MigrationFormatError(f"XBZRLE {what} count exceeds 14 bits", offset=at + i)
    return (first & 0x7F) | (second << 7), i + 2


def xbzrle_runs(
    delta: bytes | memoryview, page_size: int, at: int = 0
) -> Iterator[tuple[int, int, int]]:
    """Yield ``(page offset, delta offset, length)`` of each run of new bytes.

    Args:
        delta: the ``len`` bytes after the XBZRLE header.
        page_size: the target page size (the decoded page's length).
        at: input offset of ``delta[0]``, for error messages.

    Raises:
        MigrationFormatError: the delta breaks one of xbzrle_decode_buffer's rules.
    """
    i = d = 0
    n = len(delta)
    while i < n:
        zrun, j = _count(delta, i, at, "zero-run")
        if zrun == 0 and i:
            raise MigrationFormatError("XBZRLE zero run of 0 bytes after the first", offset=at + i)
        d += zrun
        if d > page_size:
            raise MigrationFormatError(
                f"XBZRLE zero run goes to byte {d} of a {page_size}-byte page", offset=at + i
            )
        nzrun, i = _count(delta, j, at, "data-run")
        if nzrun == 0:
            raise MigrationFormatError("XBZRLE data run of 0 bytes", offset=at + j)
        if d + nzrun > page_size or i + nzrun > n:
            raise MigrationFormatError(
                f"XBZRLE data run of {nzrun} bytes passes the page or the delta", offset=at + j
            )
        yield d, i, nzrun
        d += nzrun
        i += nzrun


def check_xbzrle(delta: bytes | memoryview, page_size: int, at: int = 0) -> None:
    """Raise :class:`MigrationFormatError` unless QEMU's decoder would accept ``delta``."""
    for _ in xbzrle_runs(delta, page_size, at):
        pass


def xbzrle_decode(page: bytearray, delta: bytes | memoryview, at: int = 0) -> None:
    """Apply ``delta`` to ``page`` (the previous copy) in place: ``xbzrle_decode_buffer``.

    Raises:
        MigrationFormatError: the delta is malformed; ``offset`` is ``at`` plus
            the index of the bad byte.
    """
    runs = list(xbzrle_runs(delta, len(page), at))  # all checked before the page changes
    for d, i, n in runs:
        page[d : d + n] = delta[i : i + n]
