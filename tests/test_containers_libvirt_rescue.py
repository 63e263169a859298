"""Issue #12 §3 on libvirt: a running guest saved by one libvirt, restored by another, survives.

The Linux test guest (issue #8) runs under bookworm's libvirt 9.0 with QEMU 7.2 and under
Debian 13's libvirt 11.3 with QEMU 10.0 (its chroot), both on ``pc-q35-7.2``; each side
``virsh save``s it once it beats.  ``miglab compat`` converts the image for the other QEMU
(same container, machine named in the domain XML), miglab points the XML's console at a
new file, and the other libvirt's ``virsh restore`` must resume the guest: its heartbeat
counts on from the saved console's last beat (:func:`miglab.qemu.saved.judge_resumed_console`).
pc-q35-7.2 is the newest machine both QEMUs know; pc-q35-5.2 would meet the pcie-root-port
gap (``test_containers_libvirt.py``), which is the compat5 work's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import miglab
from miglab.containers import container_name
from miglab.qemu.guest import default_guest
from miglab.qemu.saved import judge_resumed_console

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "libvirt-save.sh"
CHROOT = ROOT / ".qemu" / "libvirt-11.3" / "root"
#: libvirt release -> (the script's options for it, the QEMU it runs)
LIBVIRTS = {"9.0": ((), "7.2"), "11.3": (("--libvirt", "11.3"), "10.0")}
MACHINE = "pc-q35-7.2"
RUN_SECONDS = 10  # the guest beats about twice a second: >= 3 beats with room to spare

pytestmark = [
    pytest.mark.libvirt,
    pytest.mark.qemu,  # and the test guest of issue #8 (scripts/build-guest.sh)
    pytest.mark.xdist_group("libvirt"),  # one libvirtd at a time, images made once
    pytest.mark.skipif(
        os.geteuid() != 0
        or shutil.which("libvirtd") is None
        or not (CHROOT / "usr" / "sbin" / "libvirtd").exists(),
        reason="needs root, libvirt 9.0 and the libvirt 11.3 chroot (scripts/setup.sh)",
    ),
]


def _script(release: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *LIBVIRTS[release][0], *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """release -> the directory holding its libvirt-guest.img and console-save.log."""
    made = {}
    for release in LIBVIRTS:
        out = tmp_path_factory.mktemp(f"guest-{release}")
        run = _script(release, str(out), "guest")
        assert run.returncode == 0, run.stderr
        made[release] = out
    return made


@pytest.mark.parametrize(("source", "target"), [("9.0", "11.3"), ("11.3", "9.0")])
def test_guest_saved_by_one_libvirt_resumes_on_the_other(
    saved: dict[str, Path], tmp_path: Path, source: str, target: str
) -> None:
    image = saved[source] / "libvirt-guest.img"
    converted = tmp_path / "converted.img"
    to_qemu = LIBVIRTS[target][1]
    run = subprocess.run(
        [sys.executable, "-m", "miglab.cli", "compat", str(image), "-o", str(converted),
         "--to-qemu", to_qemu, "--machine", MACHINE],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    stream = miglab.load(converted)
    assert container_name(stream) == container_name(miglab.load(image)) == "libvirt-raw"
    console = tmp_path / "console-restore.log"
    old = str(saved[source] / "console-save.log")
    assert old in stream.container.xml
    stream.container.xml = stream.container.xml.replace(old, str(console))
    edited = miglab.save(stream, tmp_path / "for-target.img")
    restore = _script(target, "--restore", str(edited), "--run", str(RUN_SECONDS))
    assert (restore.returncode, restore.stdout.strip()) == (0, "running"), restore.stderr
    survived, why = judge_resumed_console(
        (saved[source] / "console-save.log").read_text(),
        console.read_text(),
        default_guest().disk_md5,
    )
    assert survived, why
