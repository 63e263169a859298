"""The four QEMU builds side by side: miglab.qemu._locate, miglab.qemu._chroot, the setup.

Each build is found by version and is the pinned Debian package; it lists the machine types
data/ records, dumps its newest q35 schema and judges its own paused stream.  A chroot build
(5.2, 11.1) takes ordinary arguments whose paths work unchanged (through symlinks, relative to
the current dir, in extra arguments and -incoming) and mounts nothing outside its own mount
namespace.  The setup leaves the host's apt sources free of duplicates, and a second run of it
finds everything present.  In CI (CI=true) a missing build fails these tests;
elsewhere it skips them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from miglab.qemu import QEMU_VERSIONS, QemuBinary, available, find_qemu
from miglab.qemu._chroot import host_dirs
from tests.helpers import DATA, NEWEST_PC, NEWEST_Q35, ROOT, qemu_build

#: The Debian package each build is (scripts/install-qemu.sh pins all but the system 7.2).
DEBIAN = {
    "5.2": "(Debian 1:5.2+dfsg-11+deb11u3)",
    "7.2": "(Debian 1:7.2+dfsg-7+deb12u",
    "10.0": "(Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)",
    "11.1": "(Debian 1:11.1.3+ds-2~bpo13+1)",
}
CHROOT_VERSIONS = ("5.2", "11.1")


def run(qemu: QemuBinary, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        qemu.command(*args),
        env={**os.environ, **qemu.env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def mount_points(pid: str = "self") -> list[str]:
    """Mount points of process ``pid``'s mount namespace, as seen from its root directory."""
    return [line.split()[4] for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines()]


def mounts_under(path: Path) -> list[str]:
    """The host's mount points at or below ``path``."""
    return [p for p in mount_points() if p == str(path) or p.startswith(f"{path}/")]


@pytest.fixture(scope="module", params=QEMU_VERSIONS)
def qemu(request: pytest.FixtureRequest) -> QemuBinary:
    return qemu_build(request.param)


@pytest.fixture(scope="module", params=CHROOT_VERSIONS)
def chroot_qemu(request: pytest.FixtureRequest) -> QemuBinary:
    return qemu_build(request.param)


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A scratch dir outside /tmp (which every chroot run sees anyway).

    Afterwards the empty mount point a chroot run made for it inside the chroot is removed,
    so the shared chroots do not collect one per test run.
    """
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="miglab-test-") as name:
        yield Path(name)
    for version in filter(available, CHROOT_VERSIONS):
        root = find_qemu(version).root
        assert root is not None
        with contextlib.suppress(OSError):  # not made (no run), or not empty: leave it
            (root / name.lstrip("/")).rmdir()


# --- every build --------------------------------------------------------------------------------


@pytest.mark.qemu
def test_build_is_the_pinned_debian_package(qemu: QemuBinary) -> None:
    first = run(qemu, "--version").stdout.splitlines()[0]
    assert first.startswith(f"QEMU emulator version {qemu.version}."), first
    assert DEBIAN[qemu.version] in first


@pytest.mark.qemu
def test_machine_types_are_those_data_records(qemu: QemuBinary) -> None:
    machines = qemu.machines()
    assert machines == json.loads((DATA / f"machines-{qemu.version}.json").read_text())
    assert machines["q35"].endswith(f"(alias of {NEWEST_Q35[qemu.version]})")
    assert machines["pc"].endswith(f"(alias of {NEWEST_PC[qemu.version]})")


@pytest.mark.qemu
def test_newest_q35_dumps_and_judges_its_own_stream(qemu: QemuBinary, tmp_path: Path) -> None:
    machine = NEWEST_Q35[qemu.version]
    schema = json.loads(qemu.dump_vmstate(tmp_path / "s.json", machine=machine).read_text())
    assert schema["vmschkmachine"] == {"Name": machine}
    stream = qemu.make_stream(tmp_path / "q35.mig", machine=machine, memory="16M")
    verdict = qemu.judge(stream, machine=machine, memory="16M")
    assert (verdict.accepted, verdict.status) == (True, "completed"), verdict.stderr


# --- the chroot builds --------------------------------------------------------------------------


@pytest.mark.qemu
def test_chroot_mounts_live_only_in_the_qemu_process(
    chroot_qemu: QemuBinary, outside_tmp: Path
) -> None:
    root = chroot_qemu.root
    assert root is not None
    assert mounts_under(root) == []
    qemu = chroot_qemu.with_binds(outside_tmp)  # a dir no argument names
    argv = qemu.command("-machine", "none", "-nodefaults", "-display", "none", "-S")
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        exe = Path(f"/proc/{process.pid}/exe")
        deadline = time.monotonic() + 60
        while exe.resolve() != root / "usr/bin/qemu-system-x86_64":  # QEMU runs in the chroot
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # QEMU's own mount table (paths relative to its root, the chroot) has the binds...
        inside = mount_points(str(process.pid))
        assert {"/proc", "/dev", "/sys", "/tmp", str(outside_tmp)} <= set(inside)
        assert mounts_under(root) == []  # ...the host's has none of them
    finally:
        process.kill()
        process.communicate()
    assert mounts_under(root) == []


@pytest.mark.qemu
def test_chroot_sees_paths_through_symlinks(
    chroot_qemu: QemuBinary, tmp_path: Path, outside_tmp: Path
) -> None:
    link = tmp_path / "link"
    link.symlink_to(outside_tmp)  # like the worktree's .guest -> /work/main/.guest
    machine = NEWEST_PC[chroot_qemu.version]
    result = run(chroot_qemu, "-machine", machine, "-nodefaults", "-display", "none",
                 "-dump-vmstate", f"{link}/schema.json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    schema = json.loads((outside_tmp / "schema.json").read_text())
    assert schema["vmschkmachine"] == {"Name": machine}


@pytest.mark.qemu
def test_chroot_resolves_relative_paths_from_the_current_dir(
    chroot_qemu: QemuBinary, tmp_path: Path, outside_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "link").symlink_to(outside_tmp)  # like `-kernel .guest/vmlinuz` in a worktree
    monkeypatch.chdir(tmp_path)
    result = run(chroot_qemu, "-machine", "none", "-nodefaults", "-display", "none",
                 "-dump-vmstate", "link/relative.json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "vmschkmachine" in json.loads((outside_tmp / "relative.json").read_text())


@pytest.mark.qemu
def test_chroot_streams_and_disks_outside_tmp(chroot_qemu: QemuBinary, outside_tmp: Path) -> None:
    # The guest's files where a caller keeps them (like .guest/disk.img), not in /tmp.
    disk = outside_tmp / "disk.img"
    disk.write_bytes(bytes(1 << 20))
    config = {
        "machine": NEWEST_PC[chroot_qemu.version],
        "memory": "16M",
        "devices": ["virtio-blk-pci,drive=d0"],
        "extra_args": ["-drive", f"file={disk},format=raw,if=none,id=d0,readonly=on"],
    }
    stream = chroot_qemu.make_stream(outside_tmp / "disk.mig", **config)
    verdict = chroot_qemu.judge(stream, **config)  # -incoming "exec:cat <outside /tmp>"
    assert (verdict.accepted, verdict.status) == (True, "completed"), verdict.stderr


# --- which host dirs a chroot run binds (no QEMU needed) ----------------------------------------


def test_host_dirs_cover_argument_paths_but_not_system_dirs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    image = ROOT / "data" / "manifest.json"
    dirs = host_dirs(root, ["-L", "/usr/share/qemu", "-drive", f"file={image},format=raw",
                            "-incoming", f"exec:cat {tmp_path}/in.mig"])  # fmt: skip
    assert any((ROOT / "data").resolve().is_relative_to(d) for d in dirs)
    assert Path("/tmp") in dirs
    assert not any(d.is_relative_to("/usr") for d in dirs)
    assert not any(d.is_relative_to(tmp_path) for d in dirs)  # inside /tmp: bound already


def test_host_dirs_bind_named_dirs_below_system_dirs_but_never_a_system_dir(
    tmp_path: Path,
) -> None:
    cache = Path("/var/cache/miglab/captures")  # where cached captures live; QMP names them
    dirs = host_dirs(tmp_path / "root", [f"file={cache}/a.mig"], extra=[cache, Path("/usr")])
    assert cache in dirs  # named by the caller: bound
    assert not any(d.is_relative_to("/usr") for d in dirs)  # a system dir itself: never
    assert host_dirs(tmp_path / "root", [f"file={cache}/a.mig"]).count(cache) == 0  # argument


def test_host_dirs_follow_symlinks_on_the_way(tmp_path: Path, outside_tmp: Path) -> None:
    (outside_tmp / "real").mkdir()
    (outside_tmp / "link").symlink_to(outside_tmp / "real")
    dirs = host_dirs(tmp_path / "root", [f"-kernel={outside_tmp}/link/vmlinuz"])
    assert outside_tmp in dirs  # where the link lives; its target is inside it


def test_host_dirs_never_bind_the_chroot_or_the_root(outside_tmp: Path) -> None:
    root = outside_tmp / "root"
    (root / "usr/share/qemu").mkdir(parents=True)
    dirs = host_dirs(root, [f"{root}/usr/share/qemu/bios.bin", "/nonexistent/x"])
    assert root not in dirs and Path("/") not in dirs
    assert not any(d.is_relative_to(root) for d in dirs)


# --- the setup ----------------------------------------------------------------------------------


def test_setup_leaves_no_duplicate_apt_sources() -> None:
    result = subprocess.run(
        ["apt-get", "update", "--print-uris"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "configured multiple times" not in result.stderr
    assert not Path("/etc/apt/sources.list.d/miglab-backports.list").exists()
    assert not re.search(r"miglab", " ".join(os.listdir("/etc/apt/sources.list.d")))


@pytest.mark.qemu
def test_setup_again_finds_every_build_present() -> None:
    for version in QEMU_VERSIONS:
        qemu_build(version)  # all four installed (in CI: or fail here)
    sources = sorted(os.listdir("/etc/apt/sources.list.d"))
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-qemu.sh")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for build in ("10.0", "5.2", "11.1"):
        assert f"install-qemu: {build}: present\n" in result.stdout
    assert sorted(os.listdir("/etc/apt/sources.list.d")) == sources
    assert mounts_under((ROOT / ".qemu").resolve()) == []
