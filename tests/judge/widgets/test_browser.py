"""The notebook widgets in a real browser: JupyterLab on 127.0.0.1, headless Chromium.

Starts JupyterLab on a copy of the tutorials (so nothing is autosaved into
the repository), runs a notebook through the lab's own command, and checks
on the DOM that every widget rendered and answers a click: the capability
negotiator (notebook 05), and the file opener, explorer, diff, stepper and
device drill-down of the workbench (notebook 09).  Needs
Debian's ``chromium`` (``apt-get install chromium``) and the ``playwright``
Python package; it fails, never skips, when either is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers import ROOT

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

CHROMIUM = Path("/usr/bin/chromium")
NOTEBOOKS = ("05-capabilities.ipynb", "09-workbench.ipynb")
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
    for name in NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, work / "notebooks" / name)
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
        deadline = time.monotonic() + 120  # a loaded machine starts it slowly
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


@contextmanager
def _notebook(lab: str, name: str) -> Iterator[Page]:
    """A Chromium page with notebook ``name`` open and every cell started."""
    assert CHROMIUM.exists(), "Debian's chromium is missing: apt-get install chromium"
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page()
            page.goto(f"{lab}/lab/tree/notebooks/{name}")
            page.wait_for_function(
                "() => window.jupyterapp && document.querySelector('.jp-Notebook')", timeout=60_000
            )
            # JupyterLab may ask which kernel to start, on a loaded machine well after the
            # page is up: take the one it proposes whenever it asks (Playwright runs the
            # handler before each action and auto-waiting assertion).
            page.add_locator_handler(
                page.locator(".jp-Dialog .jp-mod-accept"), lambda accept: accept.click()
            )
            page.wait_for_selector(
                ".jp-Toolbar-kernelStatus, .jp-Notebook-ExecutionIndicator", timeout=60_000
            )
            idle = page.get_by_role("button", name=re.compile(r"\(ipykernel\) \| Idle"))
            expect(idle).to_be_visible(timeout=120_000)
            expect(page.locator(".jp-Dialog")).to_have_count(0, timeout=30_000)
            # Not awaited: the command's promise settles only when every cell has run.
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            yield page
        finally:
            browser.close()


def _shown(page: Page, selector: str, text: str, timeout: float = 90_000) -> Locator:
    """The last element matching ``selector`` once it contains ``text`` (else the page text)."""
    from playwright.sync_api import expect

    found = page.locator(selector).last
    try:
        expect(found).to_contain_text(text, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(
            f"{selector} never showed {text!r}; the page says:\n{page.inner_text('body')[:3000]}"
        ) from exc
    return found


@pytest.mark.timeout(300)
def test_negotiator_widget_renders_and_answers_a_click(lab: str) -> None:
    from playwright.sync_api import expect

    with _notebook(lab, "05-capabilities.ipynb") as page:
        result = _shown(page, ".miglab-negotiated", "negotiated mask")
        # The stored run ticked encoder-cbor on the destination in a later cell: CBOR.
        expect(result).to_contain_text("cbor", timeout=30_000)
        # Untick it in the browser: both sides now only share JSON.
        box = page.locator(".miglab-destination").filter(has_text="encoder-cbor").last
        box.locator("input[type=checkbox]").click()
        expect(result).to_contain_text("json", timeout=30_000)
        expect(result).not_to_contain_text("encoder-cbor", timeout=30_000)


@pytest.mark.qemu
@pytest.mark.timeout(420)
def test_workbench_widgets_answer_clicks(lab: str) -> None:
    from playwright.sync_api import expect

    with _notebook(lab, "09-workbench.ipynb") as page:
        # The drill-down is in the last cells: once it shows, every cell has run.
        drill = _shown(page, ".miglab-drilldown", "removed in 10.0", timeout=180_000)

        # File opener: type another path, press open; the explorer shows that file.
        opener = page.locator(".miglab-opener").last
        opener.locator("input[type=text]").first.fill("../data/q72-pc-q35-7.2-usb.mig")
        opener.get_by_role("button", name="open").click()
        expect(opener).to_contain_text("opened ../data/q72-pc-q35-7.2-usb.mig", timeout=30_000)
        explorer = page.locator(".miglab-explorer").last
        expect(explorer.locator("select").first).to_contain_text("xhci", timeout=30_000)

        # Explorer: the search box narrows the fields of the section picked.
        explorer.locator("input[type=text]").first.fill("timer")
        expect(explorer).to_contain_text("match “timer”", timeout=30_000)

        # Diff: narrow to hpet; the e1000e PCI registers leave the table.
        differ = page.locator(".miglab-differ").last
        expect(differ).to_contain_text("EXP_DEVCAP", timeout=30_000)
        differ.locator("select").nth(2).select_option("hpet")
        expect(differ.locator(".miglab-diff")).to_contain_text("num_timers_save", timeout=30_000)
        expect(differ.locator(".miglab-diff")).not_to_contain_text("EXP_DEVCAP", timeout=30_000)

        # Stepper: one step right from the source, then the verdict QEMU gave that step.
        stepper = page.locator(".miglab-stepper").last
        step = stepper.locator(".miglab-step")
        expect(step).to_contain_text("step 0 of 5", timeout=30_000)
        stepper.locator(".widget-slider .noUi-handle").first.focus()
        page.keyboard.press("ArrowRight")
        expect(step).to_contain_text("step 1 of 5: machine type pc-q35-10.0 -> pc-q35-7.2")
        stepper.get_by_role("button", name="ask QEMU", exact=True).click()
        expect(stepper.locator(".miglab-verdict")).to_contain_text(
            "refused: MIG_CMD 0xb unknown", timeout=60_000
        )

        # Drill-down: untick "changes only"; unchanged fields come back.
        expect(drill).not_to_contain_text("core.mac", timeout=30_000)
        drill.get_by_text("changes only").click()
        expect(drill).to_contain_text("core.mac", timeout=30_000)
