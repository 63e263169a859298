"""The test guest and the device sets it runs with, as plain QEMU arguments.

A :class:`GuestSpec` names the files ``scripts/build-guest.sh`` puts in the project's
``.guest/`` (kernel, initramfs, disk image and its checksum) and the kernel command line; a
:class:`DeviceSet` is a named list of QEMU options (``-device``, ``-netdev``, ``-drive``, ...)
plus how many NICs the guest should see.  :func:`vm_args` joins them with a machine type
and a console file into the options of one VM.

Every option here means the same on QEMU 5.2, 7.2, 10.0 and 11.1 (no ``-blockdev`` JSON, no
``-audio``, no default audio or RNG backend): a stream captured on one build can be judged on
another with the same arguments.  ``virtio`` and ``legacy`` together cover every device issue
10 lists; ``live`` is the set issue 11 moves live between releases::

    >>> sorted(DEVICE_SETS)
    ['legacy', 'live', 'virtio']
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miglab.errors import MiglabError, NotFoundError

__all__ = (
    "DEVICE_SETS",
    "DISK",
    "GUEST_DIR_ENV",
    "DeviceSet",
    "GuestNotFound",
    "GuestSpec",
    "default_guest",
    "device_set",
    "vm_args",
)

#: Environment variable overriding where the built guest lives (default: the project's .guest).
GUEST_DIR_ENV = "MIGLAB_GUEST_DIR"
#: Memory the guest is given unless a caller says otherwise.
MEMORY = "128M"


class GuestNotFound(MiglabError, FileNotFoundError):
    """The guest files are missing (run ``scripts/build-guest.sh``)."""


@dataclass(frozen=True, slots=True)
class GuestSpec:
    """One bootable guest: ``-kernel``, ``-initrd``, ``-append`` and its disk.

    Attributes:
        kernel: the kernel image.
        initrd: the initramfs whose /init prints heartbeats.
        disk: raw image given read-only to the guest as ``/dev/vda`` (and to the other disk
            devices of a set); read-only so several QEMUs may share it.
        disk_md5: md5 of ``disk``, what every heartbeat must report.
        append: the kernel command line (``scripts/build-guest.sh`` says why each word).
        memory: ``-m`` value.
    """

    kernel: Path
    initrd: Path
    disk: Path
    disk_md5: str
    append: str
    memory: str = MEMORY

    def args(self, qcow2: Path | None = None) -> list[str]:
        """QEMU options booting this guest with its disk on ``-drive id=vd0``.

        With ``qcow2`` the guest's ``/dev/vda`` is that writable qcow2 image instead (an
        overlay whose backing file is :attr:`disk`, so it reads the same and can hold the
        ``savevm`` snapshots of a running guest).
        """
        drive = (
            f"if=none,id=vd0,file={qcow2},format=qcow2"
            if qcow2 is not None
            else f"if=none,id=vd0,file={self.disk},format=raw,readonly=on"
        )
        return [
            "-m", self.memory,
            "-kernel", str(self.kernel),
            "-initrd", str(self.initrd),
            "-append", self.append,
            "-drive", drive,
        ]  # fmt: skip

    def to_json(self) -> dict[str, str]:
        """A JSON-ready description (paths as strings)."""
        return {
            "kernel": str(self.kernel),
            "initrd": str(self.initrd),
            "disk": str(self.disk),
            "disk_md5": self.disk_md5,
            "append": self.append,
            "memory": self.memory,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GuestSpec:
        """Inverse of :meth:`to_json`."""
        return cls(
            Path(data["kernel"]),
            Path(data["initrd"]),
            Path(data["disk"]),
            str(data["disk_md5"]),
            str(data["append"]),
            str(data.get("memory", MEMORY)),
        )


def default_guest(directory: str | os.PathLike[str] | None = None) -> GuestSpec:
    """Return the guest ``scripts/build-guest.sh`` built (in ``directory``, default ``.guest``).

    Raises:
        GuestNotFound: a file is missing.
    """
    default = Path(__file__).resolve().parents[2] / ".guest"
    # absolute() and not resolve(): a .guest symlink stays under the project, where a chroot'd
    # QEMU build finds it.
    root = Path(directory or os.environ.get(GUEST_DIR_ENV) or default).absolute()
    manifest = root / "guest.json"
    if not manifest.is_file():
        raise GuestNotFound(f"no guest at {root} (run scripts/build-guest.sh)")
    info = json.loads(manifest.read_text())
    spec = GuestSpec(
        root / info["kernel"],
        root / info["initrd"],
        root / info["disk"],
        info["disk_md5"],
        info["append"],
    )
    for path in (spec.kernel, spec.initrd, spec.disk):
        if not path.is_file():
            raise GuestNotFound(f"guest file {path} is missing (run scripts/build-guest.sh)")
    return spec


@dataclass(frozen=True, slots=True)
class DeviceSet:
    """A named set of devices, as QEMU options, and the NICs the guest will bring up.

    Attributes:
        name: short name (``"virtio"``, ``"legacy"``).
        options: QEMU options, e.g. ``("-device", "e1000,netdev=n1")``.  The guest's disk is
            ``drive=vd0``; :data:`DISK` in an option stands for the disk image's path, for the
            set's other disk devices (each needs its own ``-drive``).
        nics: how many network interfaces the guest must see answering.
        covers: the device models the set exercises, for tables (not compared).
    """

    name: str
    options: tuple[str, ...]
    nics: int = 2
    covers: tuple[str, ...] = field(default=(), compare=False)

    def args(self, disk: Path) -> list[str]:
        """The options, with :data:`DISK` replaced by ``disk``."""
        return [option.replace(DISK, str(disk)) for option in self.options]


#: Placeholder for the guest's disk image path in :attr:`DeviceSet.options`.
DISK = "@DISK@"


def _set(name: str, covers: tuple[str, ...], *options: str) -> DeviceSet:
    return DeviceSet(name, options, 2, covers)


#: Both user-mode networks; the guest reaches 10.0.2.2 on the first and 10.0.3.2 on the second.
_NETWORKS = ("-netdev", "user,id=n0", "-netdev", "user,id=n1,net=10.0.3.0/24")

DEVICE_SETS: Mapping[str, DeviceSet] = {
    s.name: s
    for s in (
        _set(
            "virtio",
            ("virtio-blk", "virtio-net", "e1000", "virtio-serial", "virtio-balloon",
             "virtio-rng", "virtio-scsi", "xhci", "usb-tablet", "pvpanic", "isa-serial"),
            *_NETWORKS,
            "-device", "virtio-blk-pci,drive=vd0",
            "-device", "virtio-net-pci,netdev=n0",
            "-device", "e1000,netdev=n1",
            "-device", "virtio-serial-pci,id=vser0",
            "-chardev", "null,id=vsc0",
            "-device", "virtserialport,bus=vser0.0,chardev=vsc0,name=org.miglab.port0",
            "-device", "virtio-balloon-pci",
            "-object", "rng-random,id=rng0,filename=/dev/urandom",
            "-device", "virtio-rng-pci,rng=rng0",
            "-device", "virtio-scsi-pci,id=scsi0",
            "-device", "scsi-hd,drive=vd0s,bus=scsi0.0",
            "-drive", f"if=none,id=vd0s,file={DISK},format=raw,readonly=on",
            "-device", "qemu-xhci,id=xhci0",
            "-device", "usb-tablet,bus=xhci0.0",
            "-device", "pvpanic",
        ),
        _set(
            "legacy",
            ("virtio-blk", "e1000e", "rtl8139", "ehci", "uhci", "usb-kbd", "ahci", "ide-cd",
             "intel-hda", "hda-duplex", "i6300esb", "isa-serial"),
            *_NETWORKS,
            "-device", "virtio-blk-pci,drive=vd0",
            "-device", "e1000e,netdev=n0",
            "-device", "rtl8139,netdev=n1",
            "-device", "usb-ehci,id=ehci0",
            "-device", "piix3-usb-uhci,id=uhci0",
            "-device", "usb-kbd,bus=uhci0.0",
            "-device", "ich9-ahci,id=ahci0",
            "-drive", f"if=none,id=cd0,file={DISK},format=raw,readonly=on,media=cdrom",
            "-device", "ide-cd,drive=cd0,bus=ahci0.0",
            "-audiodev", "none,id=snd0",
            "-device", "intel-hda,id=hda0",
            "-device", "hda-duplex,bus=hda0.0,audiodev=snd0",
            "-device", "i6300esb",
        ),
        _set(
            "live",
            ("virtio-blk", "virtio-net", "e1000", "xhci", "usb-tablet", "isa-serial"),
            *_NETWORKS,
            "-device", "virtio-blk-pci,drive=vd0",
            # virtio-net's default MSI-X vector count is 3 on 5.2 machines, 4 on newer ones
            # (hw_compat_5_2); one fixed count on every build keeps the guest's view on a
            # destination started before the stream is seen.
            "-global", "virtio-net-pci.vectors=4",
            "-device", "virtio-net-pci,netdev=n0",
            "-device", "e1000,netdev=n1",
            "-device", "qemu-xhci,id=xhci0",
            "-device", "usb-tablet,bus=xhci0.0",
        ),
    )
}  # fmt: skip


def device_set(devices: str | DeviceSet) -> DeviceSet:
    """Return ``devices`` itself or the set of that name.

    Raises:
        KeyError: no set has that name.
    """
    if isinstance(devices, DeviceSet):
        return devices
    try:
        return DEVICE_SETS[devices]
    except KeyError:
        raise NotFoundError(f"no device set {devices!r}; known: {sorted(DEVICE_SETS)}") from None


def vm_args(
    guest: GuestSpec,
    devices: DeviceSet,
    *,
    machine: str,
    console: Path,
    qcow2: Path | None = None,
) -> list[str]:
    """All options of one VM (after the executable): TCG, machine, guest, devices, console.

    The console is the first isa-serial (the guest's ttyS0), written to the file ``console``;
    ``qcow2`` puts ``/dev/vda`` on that image (:meth:`GuestSpec.args`).
    """
    return [
        "-nodefaults", "-display", "none", "-accel", "tcg", "-cpu", "qemu64",
        "-machine", machine,
        *guest.args(qcow2),
        "-chardev", f"file,id=con0,path={console}",
        "-device", "isa-serial,chardev=con0",
        *devices.args(guest.disk),
    ]  # fmt: skip
