"""The notebook widgets in a real browser: JupyterLab on 127.0.0.1, headless Chromium.

Starts JupyterLab on a copy of a tutorial (so nothing is autosaved into the
repository), runs the notebook through the lab's own command, and checks on
the DOM that the capability negotiator rendered and answers a click.  Needs
Debian's ``chromium`` (``apt-get install chromium``) and the ``playwright``
Python package; it fails, never skips, when either is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOK = "05-capabilities.ipynb"
pytestmark = pytest.mark.browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[str]:
    """JupyterLab serving a temp copy of notebooks/ (data/ linked beside it); yields its URL."""
    work = tmp_path / "work"
    (work / "notebooks").mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, work / "notebooks" / NOTEBOOK)
    (work / "data").symlink_to(ROOT / "data")
    env = dict(os.environ)
    for var, sub in (
        ("HOME", "home"),
        ("JUPYTER_CONFIG_DIR", "jconfig"),
        ("JUPYTER_DATA_DIR", "jdata"),
        ("JUPYTER_RUNTIME_DIR", "jruntime"),
        ("IPYTHONDIR", "ipython"),
        ("MPLCONFIGDIR", "mpl"),
    ):
        (tmp_path / sub).mkdir()
        env[var] = str(tmp_path / sub)
    port = _free_port()
    cmd = [
        "timeout", "300", sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
        "--IdentityProvider.token=", "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={work}",
        "--LabApp.expose_app_in_browser=True",
    ]  # fmt: skip
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/api/status", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()
                    ) from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.timeout(300)
def test_negotiator_widget_renders_and_answers_a_click(lab: str) -> None:
    assert CHROMIUM.exists(), "Debian's chromium is missing: apt-get install chromium"
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page()
            page.goto(f"{lab}/lab/tree/notebooks/{NOTEBOOK}")
            page.wait_for_function(
                "() => window.jupyterapp && document.querySelector('.jp-Notebook')", timeout=60_000
            )
            # JupyterLab may ask which kernel to start: take the one it proposes.
            accept = page.locator(".jp-Dialog .jp-mod-accept")
            try:
                accept.wait_for(timeout=15_000)
                accept.click()
            except PlaywrightTimeout:
                pass
            page.wait_for_selector(
                ".jp-Toolbar-kernelStatus, .jp-Notebook-ExecutionIndicator", timeout=60_000
            )
            # Not awaited: the command's promise settles only when every cell has run.
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            result = page.locator(".miglab-negotiated").last
            try:
                expect(result).to_contain_text("negotiated mask", timeout=90_000)
            except AssertionError as exc:
                raise AssertionError(
                    f"no widget; the page says:\n{page.inner_text('body')[:3000]}"
                ) from exc
            # The stored run ticked encoder-cbor on the destination in a later cell: CBOR.
            expect(result).to_contain_text("cbor", timeout=30_000)
            # Untick it in the browser: both sides now only share JSON.
            box = page.locator(".miglab-destination").filter(has_text="encoder-cbor").last
            box.locator("input[type=checkbox]").click()
            expect(result).to_contain_text("json", timeout=30_000)
            expect(result).not_to_contain_text("encoder-cbor", timeout=30_000)
        finally:
            browser.close()
