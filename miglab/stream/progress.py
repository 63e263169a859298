"""The progress callback of the library calls that take time in proportion to a stream's size.

Loading, verifying, writing, extracting and indexing a multi-GiB stream take seconds to
minutes.  Each of these calls takes an optional ``progress`` argument, a :data:`Progress`,
and calls it as ``progress(phase, done, total)``: ``phase`` says what it is doing
(``"reading"``, ``"checking"``, ``"writing"``, ``"indexing"``), ``done`` and ``total`` count
bytes of the input (so a writer says how far through the stream it is, whatever it writes).
Calls come often (once a record, a RAM chunk or a batch of files) and end with
``done == total`` for each phase; a callback that draws should throttle itself.

The library never prints: :mod:`miglab.cli._progress` draws these on stderr for the
command line, a notebook may feed them to a widget.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ("Progress",)

#: ``progress(phase, done, total)``: bytes of the input done so far in ``phase``, of ``total``.
Progress = Callable[[str, int, int], None]
