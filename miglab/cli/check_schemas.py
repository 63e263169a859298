"""``miglab check-schemas SRC.json DST.json [--json] [--direction D]``: static compatibility.

Compares two ``-dump-vmstate`` schemas completely (see :mod:`miglab.compat.schema_check`)
and exits 1 when a finding breaks migration in the checked direction: by default BACKWARD,
streams written by SRC loaded by DST.

A schema lists every device class the QEMU build has (xen-*, Arm boards' sysbus
devices, abstract bases...), most of which a given guest never has.  Two filters keep
the findings that matter, and the exit status follows only those:

* ``--machine M`` (from the schemas alone): the device classes a machine of type ``M``
  can have, its board's and what a user can plug into it, as the real builds say
  (:mod:`miglab.compat.machine_devices`);
* ``--devices-of STREAM``: the device classes whose vmsd has a section in that stream.

Findings are printed errors first, then warnings, then info, each group sorted by
device.  ``--json`` prints them as a list of the objects ``verify --json`` prints too
(:meth:`miglab.findings.Finding.to_dict`), a ``--direction full`` finding's message
prefixed with its direction.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from miglab.findings import SEVERITIES, Finding, errors

if TYPE_CHECKING:
    from miglab.compat.schema_check import Compatibility, Schema

__all__ = ("register", "run")


def register(sub: Any) -> None:
    """Add the ``check-schemas`` subcommand."""
    p = sub.add_parser(
        "check-schemas",
        help="compare two -dump-vmstate schemas: what breaks migration between them",
        description=(
            "Directions read SRC as the older and DST as the newer schema: BACKWARD = DST loads "
            "SRC's streams, FORWARD = SRC loads DST's streams, FULL = both."
        ),
    )
    p.add_argument("src", help="-dump-vmstate JSON of the source QEMU")
    p.add_argument("dst", help="-dump-vmstate JSON of the destination QEMU")
    p.add_argument("--json", action="store_true", help="print the findings as a JSON list")
    p.add_argument(
        "--direction",
        choices=("backward", "forward", "full"),
        default="backward",
        help="which must hold for exit status 0 (default: backward, i.e. SRC -> DST)",
    )
    p.add_argument("--all", action="store_true", help="also print info findings (text output only)")
    p.add_argument(
        "--machine",
        metavar="TYPE",
        help="only the device classes a machine of this type can have (e.g. pc-q35-7.2)",
    )
    p.add_argument(
        "--devices-of",
        metavar="STREAM",
        action="append",
        help="only the device classes that have a section in this stream (repeatable)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the findings of the chosen direction(s) and the summary; 1 if migration breaks."""
    import json

    from miglab.compat.schema_check import compatibility, load_schema

    src, dst = load_schema(args.src), load_schema(args.dst)
    report = compatibility(src, dst)
    groups = _groups(args.direction, report)
    chosen = groups
    if args.machine:
        chosen = _groups(args.direction, compatibility(src, dst, machine=args.machine))
    if args.devices_of:
        keep = _devices_of(args.devices_of, src, dst)
        chosen = [(label, tuple(f for f in group if f.device in keep)) for label, group in chosen]
    findings = sorted(
        ((label, f) for label, group in chosen for f in group),
        key=lambda lf: (SEVERITIES.index(lf[1].severity), lf[1].device or "", lf[1].path or ""),
    )
    if args.json:
        rows = [{**f.to_dict(), "message": label + f.message} for label, f in findings]
        print(json.dumps(rows, indent=1))
        print(_summary(args, report, groups, chosen), file=sys.stderr)
    else:
        for label, f in findings:
            if f.severity != "info" or args.all:
                print(f"{f.severity:7} {f.code:18} {f.where}: {label}{f.message}")
        print(_summary(args, report, groups, chosen))
    return 1 if any(errors(group) for _, group in chosen) else 0


_Groups = list[tuple[str, tuple[Finding, ...]]]


def _groups(direction: str, report: Compatibility) -> _Groups:
    """The findings of ``direction``, labelled when both are shown."""
    return {
        "backward": [("", report.backward)],
        "forward": [("", report.forward)],
        "full": [("SRC->DST: ", report.backward), ("DST->SRC: ", report.forward)],
    }[direction]


def _summary(
    args: argparse.Namespace, report: Compatibility, groups: _Groups, chosen: _Groups
) -> str:
    """The report's summary, or with a filter the verdict on the kept findings."""
    if not args.devices_of and not args.machine:
        return report.summary()
    shown = sum(len(group) for _, group in chosen)
    total = sum(len(group) for _, group in groups)
    n = sum(len(errors(group)) for _, group in chosen)
    verdict = "broken" if n else "ok"
    whose = [f"machine type {args.machine}"] if args.machine else []
    whose += [f"the devices of {', '.join(args.devices_of)}"] if args.devices_of else []
    line = (
        f"{args.direction.upper()} for {' and '.join(whose)}: {verdict}, "
        f"{n} error(s); {shown} of the schemas' {total} finding(s) concern these devices"
    )
    if args.machine:
        kept = {f.device for _, group in chosen for f in group}
        gone = sorted({f.device for _, group in groups for f in group if f.device} - kept)
        if gone:
            some = ", ".join(gone[:6]) + (", ..." if len(gone) > 6 else "")
            line += f"; left out {len(gone)} device class(es) {args.machine} cannot have ({some})"
    return line


def _devices_of(paths: list[str], *schemas: Schema) -> set[str]:
    """The device classes (of either schema) whose vmsd has a section in one of the streams.

    A section is named after its vmsd, behind the device's path for a PCI
    device (``0000:00:1f.0/ICH9LPC``); the machine's own finding is kept.
    """
    from miglab.containers import load

    vmsds = {s.name.rsplit("/", 1)[-1] for path in paths for s in load(path).sections}
    return {"vmschkmachine"} | {
        cls for schema in schemas for cls, vmsd in schema.devices.items() if vmsd.name in vmsds
    }
