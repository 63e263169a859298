"""``miglab verify FILE [--schema DUMP [--schema-hints DUMP]] [--json]``: every inconsistency in a stream.

Exit status 0 when no error is found (warnings are printed), 1 when some
is, 2 when the file or schema cannot be read or the file is no migration
stream at all (its first bytes are not the ``QEVM`` magic and version).
"""

from __future__ import annotations

import argparse

from miglab.cli import add_schema_options, schema_index
from miglab.cli._progress import add_progress_arguments, byte_progress
from miglab.errors import MigrationFormatError

TYPE_CHECKING = False  # typing is not imported at run time (start-up, issue #14)
if TYPE_CHECKING:
    from typing import Any

__all__ = ("register", "run")


def register(sub: Any) -> None:
    """Add the ``verify`` subcommand."""
    p = sub.add_parser("verify", help="check a stream for every inconsistency (exit 1 if any)")
    p.add_argument("file", help="a migration stream")
    add_schema_options(p)
    p.add_argument("--json", action="store_true", help="print the findings as one JSON object")
    add_progress_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the findings; 1 if any is an error."""
    import json

    from miglab.findings import errors
    from miglab.stream.verify import verify

    with byte_progress(args, "verify") as progress:
        findings = verify(args.file, schema=schema_index(args), progress=progress)
    bad = errors(findings)
    first = bad[0] if bad else None
    if first is not None and first.code == "load" and first.offset is not None and first.offset < 8:
        # Nothing of a stream was read: bad input, not a finding about a stream.
        raise MigrationFormatError(f"not a migration stream: {first.message}", offset=first.offset)
    if args.json:
        print(json.dumps({"ok": not bad, "findings": [f.to_dict() for f in findings]}))
    else:
        for f in findings:
            print(f)
        print(f"{args.file}: {len(bad)} error(s), {len(findings) - len(bad)} warning(s)")
    return 1 if bad else 0
