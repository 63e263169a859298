"""Shared fixtures: the real streams and schemas in data/ and their manifest."""

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


@pytest.fixture(params=STREAMS, ids=stream_ids(STREAMS))
def stream_path(request: pytest.FixtureRequest) -> Path:
    """Every real stream shipped in data/."""
    return request.param


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Keep each notebook's cells on one xdist worker (``--dist loadgroup``).

    Ordinary tests spread over both workers one by one; nbval's cells of one
    notebook share a kernel and must run in order on the same worker.  (Under
    pytest 9.2 nbval's node ids lose the grouping, hence pytest < 9.1 in
    pyproject.toml.)
    """
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.xdist_group(item.path.stem))


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
