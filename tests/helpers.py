"""What the tests share besides fixtures: the data/ streams, their manifest and recipes, the builds.

Test modules import these (``from tests.helpers import DATA, recipe``); the fixtures that use
them live in ``tests/conftest.py``.  Paths are computed here once, from this file, so a test
module's own depth in the tree never matters.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from miglab.qemu import QemuBinary, QemuNotFound, find_qemu

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
STREAMS = [DATA / s["file"] for s in MANIFEST["streams"]]
SCHEMAS = [DATA / s["file"] for s in MANIFEST["schemas"]]
RECIPES = {s["file"]: s for s in MANIFEST["streams"]}
#: Each QEMU build's newest machine types (what `-machine q35` / `-machine pc` mean there).
NEWEST_Q35 = {
    "5.2": "pc-q35-5.2",
    "7.2": "pc-q35-7.2",
    "10.0": "pc-q35-10.0",
    "11.1": "pc-q35-11.1",
}
NEWEST_PC = {
    "5.2": "pc-i440fx-5.2",
    "7.2": "pc-i440fx-7.2",
    "10.0": "pc-i440fx-10.0",
    "11.1": "pc-i440fx-11.1",
}
#: Streams of running guests (live precopy, several passes, xbzrle; slirp with TCP state).
LIVE = [DATA / s["file"] for s in MANIFEST.get("live", [])]
LIVE_RECIPES = {s["file"]: s for s in MANIFEST.get("live", [])}


def stream_ids(paths: list[Path]) -> list[str]:
    """Short test ids: the file name without suffix."""
    return [p.stem for p in paths]


def recipe(path: Path) -> dict:
    """How a data/ stream was made (QEMU version, machine, devices...)."""
    return RECIPES[path.name] if path.name in RECIPES else LIVE_RECIPES[path.name]


def qemu_build(version: str) -> QemuBinary:
    """The installed QEMU ``version``: in CI (``CI=true``) a missing build fails the test.

    Outside CI it skips it instead, saying how to install the build.
    """
    try:
        return find_qemu(version)
    except QemuNotFound as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"{exc} (scripts/install-qemu.sh installs it)")
