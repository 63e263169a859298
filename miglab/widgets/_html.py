"""Small HTML renderers the widgets share: tables, hex dumps, value diffs.

The widgets show their results in ``ipywidgets.HTML`` models rather than
``Output`` areas: an HTML model's ``value`` is plain state, so a test can
change a control in Python and read the new value, and a browser shows
the same text.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ("diff_html", "hexdump_html", "short", "table_html")

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
