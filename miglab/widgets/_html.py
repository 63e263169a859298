"""Small HTML renderers the widgets share: tables, hex dumps, value diffs.

The widgets show their results in ``ipywidgets.HTML`` models rather than
``Output`` areas: an HTML model's ``value`` is plain state, so a test can
change a control in Python and read the new value, and a browser shows
the same text.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from miglab.analysis.diff import StreamDiff

__all__ = ("diff_changes_html", "diff_html", "hexdump_html", "short", "table_html")

#: Inline style of highlighted bytes and characters.
MARK = "background:#ffe08a;color:#000"
_MONO = "font-family:monospace;font-size:12px"


def short(value: Any, limit: int = 60) -> str:
    """A value as a short string: bytes as hex, long text cut with an ellipsis."""
    text = value.hex() if isinstance(value, (bytes, bytearray, memoryview)) else repr(value)
    if isinstance(value, memoryview):
        text = bytes(value).hex()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table_html(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    marked: int | None = None,
    css_class: str = "",
) -> str:
    """An HTML table; row number ``marked`` (0-based) is highlighted."""
    head = "".join(f"<th style='text-align:left'>{html.escape(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        style = f" style='{MARK}'" if i == marked else ""
        cells = "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
        body.append(f"<tr{style}>{cells}</tr>")
    cls = f" class='{css_class}'" if css_class else ""
    return f"<table{cls} style='{_MONO};border-collapse:collapse'><tr>{head}</tr>{''.join(body)}</table>"


def hexdump_html(
    data: bytes,
    base: int = 0,
    *,
    mark: tuple[int, int] | None = None,
    limit: int = 1024,
) -> str:
    """``xxd``-style dump of ``data`` labelled from offset ``base``.

    Args:
        data: the bytes to show.
        base: offset of ``data[0]`` in the stream (printed per line).
        mark: ``(start, stop)`` stream offsets to highlight (a field's bytes).
        limit: show at most this many bytes, starting at the line holding
            ``mark`` when it would otherwise be cut off.
    """
    start = 0
    if mark is not None and mark[0] - base >= limit:
        start = ((mark[0] - base) // 16) * 16
    view = data[start : start + limit]
    lines = []
    for row in range(0, len(view), 16):
        chunk = view[row : row + 16]
        off = base + start + row
        hexes, chars = [], []
        for i, b in enumerate(chunk):
            h, c = f"{b:02x}", html.escape(chr(b) if 32 <= b < 127 else ".")
            if mark is not None and mark[0] <= off + i < mark[1]:
                h, c = f"<span style='{MARK}'>{h}</span>", f"<span style='{MARK}'>{c}</span>"
            hexes.append(h)
            chars.append(c)
        pad = "   " * (16 - len(chunk))
        lines.append(f"{off:08x}  {' '.join(hexes)}{pad}  {''.join(chars)}")
    more = len(data) - start - len(view)
    if start:
        lines.insert(0, f"… {start} bytes above")
    if more > 0:
        lines.append(f"… {more} more bytes")
    return f"<pre class='miglab-hex' style='{_MONO};line-height:1.3'>" + "\n".join(lines) + "</pre>"


def diff_html(before: str, after: str) -> str:
    """``before → after`` with the characters that differ highlighted on both sides.

    Aligns the common prefix and suffix, which is how one changed field,
    byte or bit in a long hex string reads best.
    """
    n = 0
    while n < min(len(before), len(after)) and before[n] == after[n]:
        n += 1
    m = 0
    while m < min(len(before), len(after)) - n and before[-1 - m] == after[-1 - m]:
        m += 1

    def mark(text: str) -> str:
        mid = text[n : len(text) - m]
        return (
            html.escape(text[:n])
            + (f"<span style='{MARK}'>{html.escape(mid)}</span>" if mid else "")
            + html.escape(text[len(text) - m :])
        )

    return f"<code>{mark(before)}</code> → <code>{mark(after)}</code>"


def diff_changes_html(diff: StreamDiff, *, limit: int = 300) -> str:
    """A :class:`~miglab.analysis.diff.StreamDiff` as one table: a row per member change.

    Sections only one side has get one row; values are shown whole (a PCI
    register, a byte run), with the differing characters highlighted, so
    the change is visible however far into a buffer it lies.
    """
    a, b = diff.machines
    head = f"machine {html.escape(str(a))} → {html.escape(str(b))}<br>" if a != b else ""
    rows = []
    for s in diff.sections:
        if s.status != "changed":
            side = "A" if s.status == "only-a" else "B"
            rows.append(
                f"<tr><td>{html.escape(s.name)}</td><td colspan='4'>only in {side}</td></tr>"
            )
            continue
        for c in s.changes:
            where = html.escape(c.path) + (f" @0x{c.offset:x}" if c.offset is not None else "")
            before = "" if c.before is None else str(c.before)
            after = "" if c.after is None else str(c.after)
            if c.before is None:
                value = f"only in B: <code>{html.escape(after)}</code>"
            elif c.after is None:
                value = f"only in A: <code>{html.escape(before)}</code>"
            else:
                value = diff_html(before, after)
            rows.append(
                f"<tr><td>{html.escape(s.name)}</td><td>{where}</td>"
                f"<td>{html.escape(c.register or '')}</td><td>{value}</td>"
                f"<td>{html.escape('; '.join(c.bits))}</td></tr>"
            )
    if not rows:
        return head + "<i>no difference in device state</i>"
    more = f"<br><i>… {len(rows) - limit} more rows</i>" if len(rows) > limit else ""
    cols = "".join(
        f"<th style='text-align:left'>{c}</th>"
        for c in ("section", "member", "register", "before → after", "bits")
    )
    return (
        f"{head}<table class='miglab-diff' style='{_MONO};border-collapse:collapse'>"
        f"<tr>{cols}</tr>{''.join(rows[:limit])}</table>{more}"
    )
