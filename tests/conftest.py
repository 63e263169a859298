"""Shared fixtures: the real streams and schemas in data/ and their manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
STREAMS = [DATA / s["file"] for s in MANIFEST["streams"]]
SCHEMAS = [DATA / s["file"] for s in MANIFEST["schemas"]]
RECIPES = {s["file"]: s for s in MANIFEST["streams"]}


def stream_ids(paths: list[Path]) -> list[str]:
    """Short test ids: the file name without suffix."""
    return [p.stem for p in paths]


@pytest.fixture(params=STREAMS, ids=stream_ids(STREAMS))
def stream_path(request: pytest.FixtureRequest) -> Path:
    """Every real stream shipped in data/."""
    return request.param


def recipe(path: Path) -> dict:
    """How a data/ stream was made (QEMU version, machine, devices...)."""
    return RECIPES[path.name]
