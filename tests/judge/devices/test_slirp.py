"""Real QEMU 7.2 and 10.0 load the slirp state miglab rewrote, and refuse a broken one.

The decoding on real streams is ``tests/devices/test_slirp.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

import miglab
from miglab.devices.slirp import SOCKET_TAG
from miglab.vmstate import VMState
from tests.helpers import LIVE, ROOT, recipe


def _make_data() -> ModuleType:
    """scripts/make-data.py as a module (it builds the guest kernel of the recipes)."""
    spec = importlib.util.spec_from_file_location("make_data", ROOT / "scripts" / "make-data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.qemu
@pytest.mark.parametrize("qemu_version", ["7.2", "10.0"])
def test_qemu_loads_slirp_state_miglab_rewrote_and_refuses_a_broken_one(
    qemu_version: str, tmp_path: Path
) -> None:
    from miglab.qemu import find_qemu

    path = next(
        p for p in LIVE if recipe(p)["qemu"] == qemu_version and recipe(p)["guest"] == "dirtier"
    )
    r = recipe(path)
    kernel = tmp_path / "dirtier.bin"
    kernel.write_bytes(_make_data().dirtier_kernel(r["dirty_pages"]))
    args = ["-kernel", str(kernel)] + [a for n in r["netdevs"] for a in ("-netdev", n)]
    kw = {"machine": r["machine"], "memory": r["memory"], "devices": r["devices"]}
    qemu = find_qemu(qemu_version)

    stream = miglab.load(path)
    slirps = [s.payload for s in stream.sections if s.name == "slirp"]
    for state in slirps:
        assert isinstance(state, VMState)
        state.fields["ip_id"] = 0x1234
    good = qemu.judge(miglab.save(stream, tmp_path / "edited.mig"), extra_args=args, **kw)
    assert good.accepted, good.stderr
    # A socket tag where the list should end: slirp_state_load reads the leases as a
    # socket and refuses it, so the judge can fail.
    assert isinstance(slirps[0], VMState)
    slirps[0].fields["end"] = SOCKET_TAG
    bad = qemu.judge(miglab.save(stream, tmp_path / "broken.mig"), extra_args=args, **kw)
    assert not bad.accepted and "of device 'slirp'" in bad.stderr
