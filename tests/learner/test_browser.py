"""End to end in a real browser, as a workshop learner meets it: JupyterLab serves the learner
edition of notebook 01 (made by the same code as `make learner`, with the JupyterLab settings
`make setup` puts in .venv, so it opens without the "Jupyter news?" pop-up), headless Chromium
(Debian's, driven by Playwright) types a correct answer into the first exercise, runs every
cell through the UI, and finds: no unexpected error, the answered check in green
(`labs-check--correct`, text "Correct!"), every other check grey (`labs-check--unattempted`).

In CI (CI=true) this test must run: `make test` installs Chromium and Playwright. On a learner's
machine without Chromium it is skipped with a message that says how to install it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tools.notebook_tools import BEGIN, END, MESSAGE_FIRST_NOTE, learner_edition

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "01_state_dict_basics.ipynb"
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HOW_TO_INSTALL = (
    "install Debian's Chromium (sudo apt-get install chromium) and Playwright "
    "(pip install -r requirements.txt), or set CHROMIUM to a Chromium binary"
)


def _need(condition: bool, what: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what}: the browser test must run in CI; {HOW_TO_INSTALL}")
    pytest.skip(f"{what}; {HOW_TO_INSTALL}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab_server(tmp_path):
    work = tmp_path / "learner"
    learner_edition(ROOT / "notebooks" / NOTEBOOK, work / NOTEBOOK)
    port, token = _free_port(), "workbook-e2e"
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.ip=127.0.0.1",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={work}",
        "--ServerApp.allow_root=True",
    ]  # nothing about news or updates: .venv's settings (make setup) must turn them off
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=work,
        # as make learner-lab starts it: its kernels show an error's message first
        env={**os.environ, "JUPYTER_PLATFORM_DIRS": "1", "WORKBOOK_MESSAGE_FIRST": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(
                    "JupyterLab did not start:\n" + (tmp_path / "lab.log").read_text()[-3000:]
                )
            time.sleep(0.5)
    yield url, token, work
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def _first_exercise() -> tuple[int, str]:
    """Position of notebook 01's first exercise cell, and its solution as a learner types it."""
    cells = json.loads((ROOT / "notebooks" / NOTEBOOK).read_text())["cells"]
    for index, cell in enumerate(cells):
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and BEGIN in source:
            lines = [line for line in source.splitlines() if line.strip() not in (BEGIN, END)]
            return index, "\n".join(lines)
    raise AssertionError(f"{NOTEBOOK} has no exercise")


NEWS = "official Jupyter news"  # JupyterLab's pop-up: "Would you like to get notified about ..."


@pytest.mark.learner_run  # make test-learner: the workshop experience, with the learner edition
def test_learner_answers_in_jupyterlab_and_sees_a_green_check(lab_server, chromium_args):
    _need(Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "the playwright package is not installed")
    url, token, work = lab_server
    exercise, answer = _first_exercise()
    shots = ROOT / "build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}", timeout=60_000)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            page.wait_for_selector(
                ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000
            )
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=60_000)
            page.wait_for_timeout(2_000)  # the news question would be up by now
            assert page.get_by_text(NEWS).count() == 0, (
                "JupyterLab asked about news: make setup installs .venv's settings "
                "(tools/jupyterlab-overrides.json) that turn the question off"
            )
            # The learner types the answer into the first exercise's cell.
            cell = page.locator(".jp-Notebook .jp-Cell").nth(exercise)
            cell.scroll_into_view_if_needed()
            cell.locator(".cm-content").click()
            page.keyboard.press("Control+a")
            page.keyboard.insert_text(answer)
            page.keyboard.press("Escape")
            # On a loaded machine the first click can land before the kernel session is wired up;
            # retry until the first code cell has started ([*]) or finished ([1]).
            first_prompt = page.locator(".jp-CodeCell .jp-InputArea-prompt").first
            for attempt in range(3):
                page.click(".lm-MenuBar-item:has-text('Run')")
                page.click(".lm-Menu-item:has-text('Run All Cells')")
                try:
                    page.wait_for_function(
                        "el => /\\[(\\*|\\d+)\\]/.test(el.textContent)",
                        arg=first_prompt.element_handle(),
                        timeout=30_000,
                    )
                    break
                except Exception:
                    if attempt == 2:
                        raise
            # Every code cell gets a number in its prompt once it has run; none may stay at [*] or [ ].
            page.wait_for_function(
                """() => {
                    const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
                    return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
                }""",
                timeout=180_000,
            )
            page.wait_for_selector(
                ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000
            )
            # The answered exercise's check is green; the others are grey, not attempted.
            verdict = page.locator(".jp-Notebook .jp-Cell").nth(exercise + 1).locator(".labs-check")
            verdict.scroll_into_view_if_needed()
            assert verdict.count() == 1, "the check shows no labs-check verdict"
            assert "labs-check--correct" in verdict.get_attribute("class")
            assert verdict.inner_text().startswith("Correct!"), verdict.inner_text()
            colour = verdict.evaluate("el => getComputedStyle(el).borderLeftColor")
            assert colour == "rgb(46, 125, 50)", colour  # green
            page.screenshot(path=str(shots / "learner_01_correct.png"))
            others = page.locator(".labs-check--unattempted")
            assert others.count() >= 1
            assert page.locator(".labs-check--wrong").count() == 0
            assert page.get_by_text(NEWS).count() == 0, "JupyterLab asked about news"
            page.keyboard.press("Control+s")
            page.wait_for_selector(".jp-mod-dirty", state="detached", timeout=30_000)
        finally:
            page.screenshot(path=str(shots / "learner_01.png"), full_page=False)
            browser.close()
    saved = json.loads((work / NOTEBOOK).read_text())
    assert "".join(saved["cells"][exercise]["source"]).strip() == answer.strip(), (
        "the typed answer is not what was saved"
    )
    code = [c for c in saved["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] for c in code), "some cells did not run"
    for c in code:
        errors = [o for o in c["outputs"] if o["output_type"] == "error"]
        tagged = "raises-exception" in c.get("metadata", {}).get("tags", [])
        assert tagged or not errors, (
            f"unexpected error in cell {''.join(c['source'])[:80]!r}: {errors[0]['evalue'][:300]}"
        )
        if tagged:
            assert errors, "a cell tagged raises-exception did not raise in the browser"
            traceback = errors[0]["traceback"]
            assert traceback[1] == MESSAGE_FIRST_NOTE and traceback[0] == traceback[-1], (
                "the error's message is not shown first: make setup copies "
                "tools/ipython_kernel_config.py into .venv"
            )
    checks = [c for c in code if "".join(c["source"]).startswith("check.")]
    answered = json.dumps(saved["cells"][exercise + 1]["outputs"])
    assert "Correct!" in answered and "labs-check--correct" in answered
    for c in checks:
        if c is not saved["cells"][exercise + 1]:
            assert "Not attempted yet" in json.dumps(c["outputs"])
