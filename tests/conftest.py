"""Shared fixtures and collection hooks; the shared constants are in ``tests/helpers.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import STREAMS, stream_ids


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
