"""The workbook's site (``make site``, tools/site/build.py), served on 127.0.0.1 and read in
Debian's Chromium through Playwright: pasted error messages land on the section that raises them,
plots load, "next" walks 01 to 16, and nothing is fetched from another host.

Run by ``make test-site`` (which builds the site first); marked ``site``, so ``make test`` leaves
it out. Without a built site it is skipped (in CI it fails), and without Chromium the browser
tests are skipped the same way as tests/learner/test_browser.py.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import sys
import threading
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "build" / "site"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHROMIUM = os.environ.get("CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# (what a reader pastes, notebook page, heading of the section that raises it and shows the fix,
# what that section's error output shows)
MODULE = 'Unexpected key(s) in state_dict: "module.'
MESSAGES = [
    (
        MODULE,
        "07_ddp_and_wrapper_prefixes",
        "1. nn.DataParallel adds module. to every key",
        MODULE,
    ),
    (
        "Attempting to deserialize object on a CUDA device",
        "06_devices_and_map_location",
        "2. Loading it without map_location",
        None,
    ),
    (
        "Weights only load failed",
        "14_error_field_guide",
        "11. Weights only load failed: the usual causes in one place",
        None,
    ),
    (
        "size mismatch for",
        "02_architecture_mismatch",
        "1. Size mismatch: the document's example",
        None,
    ),
    (
        "PytorchStreamReader failed reading zip archive: failed finding central directory",
        "14_error_field_guide",
        "2. A file cut short, and a checksum before loading",
        None,
    ),
    (
        "Can't pickle local object",
        "14_error_field_guide",
        "8. Can't pickle local object: lambdas in a model or a scheduler",
        None,
    ),
    # a whole pasted traceback, with the reader's own file, model and key names
    (
        "Traceback (most recent call last):\n"
        '  File "/home/me/serve.py", line 12, in <module>\n'
        '    model.load_state_dict(torch.load("best.pth"))\n'
        "RuntimeError: Error(s) in loading state_dict for ResNet:\n"
        '\tMissing key(s) in state_dict: "conv1.weight", "bn1.weight".\n'
        '\tUnexpected key(s) in state_dict: "module.conv1.weight", "module.bn1.weight".',
        "07_ddp_and_wrapper_prefixes",
        "1. nn.DataParallel adds module. to every key",
        MODULE,
    ),
]


def _need(condition: bool, what: str, how: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what}: {how}")
    pytest.skip(f"{what}; {how}")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site():
    _need(
        (SITE / "index.html").exists(),
        "the site is not built",
        "run make test-site (it builds the site, then runs this file)",
    )
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(SITE))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(chromium_args):
    how = (
        "install Debian's Chromium (make browser-deps, or sudo apt-get install chromium) "
        "and Playwright (pip install -r requirements.txt), or set CHROMIUM"
    )
    _need(Path(CHROMIUM).exists(), f"no Chromium at {CHROMIUM}", how)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need(False, "the playwright package is not installed", how)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=chromium_args)
        yield b
        b.close()


@pytest.fixture
def page(browser, site):
    """A page that may only talk to the local server: any request to another host is blocked
    and makes the test fail (no CDN, at build time or when reading)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    foreign: list[str] = []

    def route(r):
        if r.request.url.startswith(site + "/") or r.request.url.startswith("data:"):
            r.continue_()
        else:
            foreign.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not foreign, f"the page asked another host for {foreign}"
    assert not errors, f"JavaScript errors: {errors}"


def _clean(text: str) -> str:
    return " ".join(text.replace("\u00b6", "").split())


def _search(page, site: str, query: str) -> list[tuple[str, str]]:
    page.goto(f"{site}/index.html")
    page.fill("#site-search-input", query)
    page.press("#site-search-input", "Enter")
    page.wait_for_url(re.compile(r".*/search\.html\?q=.*"))
    page.wait_for_selector("#search-results li a.result-title", timeout=10_000)
    links = page.locator("#search-results li a.result-title")
    return [
        (links.nth(i).get_attribute("href"), _clean(links.nth(i).inner_text()))
        for i in range(min(links.count(), 5))
    ]


@pytest.mark.parametrize(
    ("query", "notebook", "heading", "raised"),
    MESSAGES,
    ids=[
        "module.",
        "cuda",
        "weights-only",
        "size-mismatch",
        "central-directory",
        "pickle-local",
        "pasted-traceback",
    ],
)
def test_a_pasted_message_lands_on_the_section_that_raises_it(
    page, site, query, notebook, heading, raised
):
    results = _search(page, site, query)
    href, title = results[0]
    assert href.startswith(f"{notebook}.html#"), f"first results: {results}"
    assert title == f"{notebook[:2]} · {heading}", f"first results: {results}"
    page.click("#search-results li a.result-title >> nth=0")
    page.wait_for_url(re.compile(rf".*/{notebook}\.html#.*"))
    anchor = page.evaluate("decodeURIComponent(location.hash.slice(1))")
    target = page.locator(f"[id='{anchor}']")
    assert _clean(target.inner_text()) == heading
    # the section (its cells up to the next heading) shows the error, raised by a real cell
    shown = page.evaluate(
        """id => {
            const heading = document.getElementById(id);
            let cell = heading.closest('.jp-Cell');
            let text = '';
            for (let c = cell.nextElementSibling; c; c = c.nextElementSibling) {
                if (c.querySelector('h1, h2, h3, h4')) break;
                c.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]')
                    .forEach(o => { text += o.innerText + '\\n'; });
            }
            return text;
        }""",
        anchor,
    )
    raised = raised or query
    assert _clean(raised) in _clean(shown), f"the section does not raise {raised!r}"


def test_printed_output_is_searchable(page, site):
    """Many static search indexers skip code blocks; this one indexes printed output too."""
    results = _search(page, site, "scratch folder: runs/07_ddp_and_wrapper_prefixes")
    assert results[0][0].startswith("07_ddp_and_wrapper_prefixes.html#setup"), results


def test_a_plot_loads(page, site):
    page.goto(f"{site}/03_partial_loading_and_transfer.html")
    img = page.locator(".jp-OutputArea-output img").first
    img.scroll_into_view_if_needed()
    src = img.get_attribute("src")
    assert src.endswith(".png") and not src.startswith("data:"), src
    page.wait_for_function("img => img.complete", arg=img.element_handle())
    assert img.evaluate("img => img.naturalWidth") > 0


def test_next_goes_from_01_to_16(page, site):
    page.goto(f"{site}/{NOTEBOOKS[0].stem}.html")
    seen = []
    while True:
        seen.append(page.url.rsplit("/", 1)[-1])
        nxt = page.locator(".prevnext-top a[rel=next]")
        if nxt.count() == 0:
            break
        nxt.click()
        page.wait_for_load_state()
        assert len(seen) <= len(NOTEBOOKS), seen
    assert seen == [f"{p.stem}.html" for p in NOTEBOOKS]
    assert len(seen) >= 16 and seen[0].startswith("01_")


# ---------------------------------------------------------------- without the browser


def _get(site: str, path: str) -> bytes:
    with urllib.request.urlopen(f"{site}/{path}", timeout=10) as r:
        return r.read()


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(html: str) -> _Collect:
    c = _Collect()
    c.feed(html)
    return c


def test_no_page_loads_anything_from_another_host(site):
    for f in sorted(SITE.rglob("*.html")):
        for tag, attrs in _parse(f.read_text()).tags:
            for attr in ("src", "href"):
                url = attrs.get(attr) or ""
                if tag != "a" and re.match(r"^(https?:)?//", url):
                    pytest.fail(f"{f.name}: <{tag} {attr}={url!r}> loads from another host")


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem[:2] for p in NOTEBOOKS])
def test_every_notebook_page_has_downloads_versions_and_date(site, nb):
    html = _get(site, f"{nb.stem}.html").decode()
    c = _parse(html)
    hrefs = {a.get("href") for t, a in c.tags if t == "a"}
    assert f"notebooks/{nb.stem}.ipynb" in hrefs and f"learner/{nb.stem}.ipynb" in hrefs
    committed = json.loads(_get(site, f"notebooks/{nb.stem}.ipynb"))
    assert committed == json.loads(nb.read_text()), (
        f"the download differs from notebooks/{nb.name}: changed since the build? "
        "(make test-site builds the site first)"
    )
    learner = json.loads(_get(site, f"learner/{nb.stem}.ipynb"))
    code = [c for c in learner["cells"] if c["cell_type"] == "code"]
    assert code and not any(c["outputs"] for c in code), "learner edition keeps outputs"
    assert "### BEGIN SOLUTION" not in json.dumps(learner)
    torch_pin = re.search(r"^torch==(\S+)", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    text = _clean(" ".join(c.text))
    assert f"torch {torch_pin}" in text
    assert re.search(r"Last verified run: \d{4}-\d\d-\d\d", text), text[:500]


def test_error_index_lists_every_raised_error(site):
    """Made from the raises-exception cells at build time: every one is listed, with a link to
    its notebook page."""
    html = _get(site, "errors.html").decode()
    text = _clean(" ".join(_parse(html).text))
    links = {a.get("href", "") for t, a in _parse(html).tags if t == "a"}
    n = 0
    for nb in NOTEBOOKS:
        for cell in json.loads(nb.read_text())["cells"]:
            if "raises-exception" not in cell.get("metadata", {}).get("tags", []):
                continue
            for out in cell.get("outputs", []):
                if out["output_type"] != "error":
                    continue
                n += 1
                first = re.sub(r"\x1b\[[0-9;]*m", "", out["evalue"]).strip().splitlines()
                headline = _clean(f"{out['ename']}: {first[0] if first else ''}")
                assert headline in text, f"{nb.name}: {headline!r} is not in the index"
                assert any(h.startswith(f"{nb.stem}.html#") for h in links), nb.name
    assert n > 0 and f"the {n} error outputs" in text


def test_a_page_per_command(site):
    top = _get(site, "cli.html").decode()
    assert "usage: python -m labs_utils" in top
    for command in re.search(r"\{([a-z,]+)\}", top).group(1).split(","):
        page = _get(site, f"cli-{command}.html").decode()
        assert f"usage: python -m labs_utils {command}" in page


def test_the_build_refuses_broken_links_and_remote_scripts(tmp_path):
    """Warnings are errors: tools/site/build.py's final check reports a link to a missing page or
    heading and anything loaded from another host (the build then exits with status 1)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "site_build", ROOT / "tools" / "site" / "build.py"
    )
    build = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = build  # dataclasses look their module up there
    spec.loader.exec_module(build)
    (tmp_path / "a.html").write_text(
        '<h2 id="here">x</h2><a href="b.html#there">b</a><a href="#here">ok</a>'
        '<a href="missing.html">m</a><a href="https://pytorch.org/docs">fine</a>'
        '<script src="https://cdn.example.org/mathjax.js"></script>'
        '<link rel="stylesheet" href="//fonts.example.org/x.css">'
    )
    (tmp_path / "b.html").write_text('<h2 id="elsewhere">b</h2>')
    builder = build.Builder(tmp_path)
    builder.check_site()
    problems = "\n".join(builder.problems)
    assert "no #there in b.html" in problems
    assert "'missing.html' points to a missing file" in problems
    assert "mathjax.js" in problems and "fonts.example.org" in problems
    assert "pytorch.org" not in problems and "#here" not in problems
    assert len(builder.problems) == 4, problems
