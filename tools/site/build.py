"""Build the workbook's static site from the committed notebooks (``make site``).

    python tools/site/build.py [--out build/site]

Nothing is executed again: every page shows the outputs stored in the notebooks, the ones strict
nbval checks in ``make test``. Nothing is downloaded either, at build time or when the pages are
read: no theme, template, font or script from the network (the JupyterLab stylesheet comes from
nbconvert's own ``lab`` template; search is a small script in ``static/``).

What it writes (all links relative, so the folder also works opened from disk):

- ``index.html``: the three doors (learn, teach, look up) and the README's learning path;
- one page per notebook (``NN_name.html``) with its outputs and plots, the notebook and its learner
  edition to download, the versions the outputs were made with, the date of the last commit of
  the notebook (its outputs are what ``make test`` verifies), and previous / next links;
- one page per ``notebooks/*.md`` document (coverage table, question register, loaders,
  instructor kit: whichever exist);
- ``errors.html``: every error that a cell tagged ``raises-exception`` shows, message to section,
  made from the notebooks on every build so it cannot fall behind them;
- ``cli-<command>.html``: ``python -m labs_utils <command> --help``, run at build time;
- ``search.html`` and ``static/search-index.js``: search by section over prose, code, printed
  output and error messages, which ranks the sections that raise a pasted message first.

Warnings are errors: a link to a missing page, file or heading, a page that loads a script, a
stylesheet or an image from another host, or a ``raises-exception`` cell without an error stops
the build with the list of problems (exit status 1).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath

import nbformat
from bs4 import BeautifulSoup, NavigableString, Tag
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from nbconvert import HTMLExporter, TemplateExporter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter
from nbconvert.preprocessors import ExtractOutputPreprocessor

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
NOTEBOOKS = ROOT / "notebooks"
SITE_NAME = "Saving and loading PyTorch weights"

# notebooks/*.md documents: page name, title in the navigation, door on the landing page.
# Any other notebooks/*.md becomes a page too (door "look up", title from its first heading).
DOCUMENTS = {
    "INSTRUCTORS.md": ("instructors.html", "Instructor kit", "teach"),
    "COVERAGE.md": ("coverage.html", "Coverage of the source documents", "teach"),
    "QUESTIONS.md": ("questions.html", "Question register", "lookup"),
    "LOADERS.md": ("loaders.html", "Loaders", "lookup"),
}
# import name -> distribution name in requirements.txt
IMPORTS = {
    "numpy": "numpy",
    "matplotlib": "matplotlib",
    "safetensors": "safetensors",
    "onnx": "onnx",
    "onnxscript": "onnxscript",
    "onnxruntime": "onnxruntime",
    "torchdata": "torchdata",
    "huggingface_hub": "huggingface_hub",
    "peft": "peft",
    "lightning": "lightning",
}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
HEADINGS = ("h1", "h2", "h3", "h4")
BOILERPLATE = ("check the documentation of torch.load", "more information at")


class BuildError(Exception):
    pass


class _Links(HTMLParser):
    """The ids of a page, and the URLs it links to or loads."""

    LOADS = {
        "a": "href",
        "link": "href",
        "script": "src",
        "img": "src",
        "iframe": "src",
    }

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.urls: list[tuple[str, str, str]] = []
        self.remote_styles: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.ids.add(a[key])
        attr = self.LOADS.get(tag, "src" if tag in ("source", "video", "audio") else "")
        if attr and a.get(attr):
            self.urls.append((tag, attr, a[attr]))
        if re.search(r"url\(\s*['\"]?(https?:)?//", a.get("style") or ""):
            self.remote_styles.append(tag)


class CellsExporter(HTMLExporter):
    """HTMLExporter without its last step, a BeautifulSoup pass over the whole page (alt texts,
    tabindex): build.py parses each page once and does what it needs itself."""

    def from_notebook_node(self, nb, resources=None, **kw):
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        self.register_filter("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self))
        resources = self._init_resources(resources)
        self.register_filter(
            "filter_data_type",
            WidgetsDataTypeFilter(
                notebook_metadata=self._nb_metadata, parent=self, resources=resources
            ),
        )
        return TemplateExporter.from_notebook_node(self, nb, resources, **kw)


@dataclass
class Section:
    page: str
    anchor: str
    heading: str
    names: list[str]
    order: int
    parts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass
class Page:
    name: str  # file name in the site
    title: str
    source: str  # repository path it was made from
    soup: BeautifulSoup | None = None
    ids: set[str] = field(default_factory=set)
    aliases: dict[str, str] = field(default_factory=dict)  # nbconvert's id -> ours
    heading_ids: dict[str, str] = field(default_factory=dict)  # heading text -> id
    sections: list[Section] = field(default_factory=list)


@dataclass
class Notebook(Page):
    stem: str = ""
    number: str = ""
    versions: list[tuple[str, str]] = field(default_factory=list)
    verified: str = ""
    verified_how: str = ""
    images: int = 0


def clean(text: str) -> str:
    return " ".join(ANSI.sub("", text).replace("\u00b6", "").split())


def slug(text: str) -> str:
    """GitHub's heading anchors (lower case, punctuation dropped, spaces to dashes), so a link
    written for GitHub, `../README.md#set-up`, finds its heading here too."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-") or "section"


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s#;]+)", line)
        if m:
            out[m.group(1).lower().replace("-", "_")] = m.group(2)
    return out


def last_verified(path: Path) -> tuple[str, str]:
    """The date of the notebook's last commit (its outputs are what the suite verifies), or the
    file's modification date when it has changes not committed yet or there is no git history."""
    rel = path.relative_to(ROOT).as_posix()
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", rel],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        date = subprocess.run(
            ["git", "log", "-1", "--format=%cs", "--", rel],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if date and not dirty:
            return date, "the date of the notebook's last commit"
    except (OSError, subprocess.CalledProcessError):
        pass
    mtime = datetime.datetime.fromtimestamp(path.stat().st_mtime, datetime.timezone.utc)
    return (
        mtime.date().isoformat(),
        "the notebook file's modification date (not committed)",
    )


def heading_names(tag: Tag, text: str) -> list[str]:
    """Phrases a heading names: its code spans, and its text before a colon without the number.
    A section whose heading names a message ranks first for that message in search."""
    names = [clean(c.get_text()).lower() for c in tag.find_all("code")]
    bare = re.sub(r"^(\d+\.|fault \d+:)\s*", "", text.lower())
    names.append(bare.split(":")[0].strip())
    return sorted({n for n in names if len(n) >= 4})


def error_lines(output: dict) -> tuple[str, str]:
    """(headline, detail) of an error output: `ename: first line`, and its last informative line."""
    lines = [clean(x) for x in ANSI.sub("", output.get("evalue", "")).splitlines()]
    lines = [x for x in lines if x]
    headline = f"{output['ename']}: {lines[0] if lines else ''}".strip()
    detail = ""
    for line in reversed(lines[1:]):
        if not line.lower().startswith(BOILERPLATE):
            detail = line
            break
    return headline, detail


def output_text(output: dict) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return output.get("text", "")
    if kind in ("execute_result", "display_data"):
        return output.get("data", {}).get("text/plain", "")
    if kind == "error":
        return f"{output['ename']}: {output.get('evalue', '')}"
    return ""


def render_math(soup: BeautifulSoup, root: Tag) -> None:
    """The few inline formulas ($W + s \\cdot BA$) as plain HTML, instead of MathJax from a CDN."""
    symbols = {
        r"\cdot": "\u00b7",
        r"\alpha": "\u03b1",
        r"\times": "\u00d7",
        r"\,": "\u2009",
    }
    for text in list(root.find_all(string=re.compile(r"\$[^$]+\$"))):
        if text.find_parent(["code", "pre"]):
            continue
        pieces = re.split(r"\$([^$]+)\$", str(text))
        new = []
        for i, piece in enumerate(pieces):
            if i % 2 == 0:
                new.append(NavigableString(piece))
                continue
            span = soup.new_tag("span", attrs={"class": "math"})
            for key, value in symbols.items():
                piece = piece.replace(key, value)
            for part in re.split(r"(\^\{[^}]*\}|\^.)", piece):
                if part.startswith("^"):
                    sup = soup.new_tag("sup")
                    sup.string = part[1:].strip("{}")
                    span.append(sup)
                else:
                    span.append(NavigableString(part))
            new.append(span)
        for node in new:
            text.insert_before(node)
        text.extract()


def number_headings(soup: BeautifulSoup, page: Page, root: Tag) -> None:
    """Our own heading ids (a-z0-9 and dashes), an anchor link on each, nbconvert's ids kept as
    aliases so links written against them still resolve."""
    for h in root.find_all(HEADINGS):
        for a in h.find_all("a", class_="anchor-link"):
            a.decompose()
        text = clean(h.get_text())
        old = h.get("id")
        base = slug(text)
        anchor, n = base, 1
        while anchor in page.ids:
            anchor, n = f"{base}-{n}", n + 1
        page.ids.add(anchor)
        h["id"] = anchor
        if old:
            page.aliases[urllib.parse.unquote(old)] = anchor
        page.heading_ids.setdefault(text, anchor)
        link = soup.new_tag("a", attrs={"class": "anchor-link", "href": f"#{anchor}"})
        link.string = "\u00b6"
        link["aria-label"] = "link to this section"
        h.append(link)


class Builder:
    def __init__(self, out: Path):
        self.out = out
        self.problems: list[str] = []
        self.pages: dict[str, Page] = {}  # site file name -> page
        self.by_source: dict[str, str] = {}  # repository path -> site file name
        self.notebooks: list[Notebook] = []
        self.documents: list[tuple[Page, str]] = []
        self.cli: list[tuple[str, str, str]] = []  # (command, page, help text)
        self.errors: list[dict] = []
        self.pins = pins()
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html", "j2"]),
            keep_trailing_newline=True,
        )
        self.copied: set[str] = set()
        self.extra: list[Page] = []  # Markdown files that pages link to

    # ---------------------------------------------------------------- inputs
    def collect(self) -> None:
        for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
            nb = Notebook(
                name=f"{path.stem}.html",
                title="",
                source=path.relative_to(ROOT).as_posix(),
                stem=path.stem,
                number=path.stem[:2],
            )
            self.notebooks.append(nb)
            self.pages[nb.name] = nb
            self.by_source[nb.source] = nb.name
        if not self.notebooks:
            raise BuildError("no notebooks/NN_*.ipynb found")
        known = list(DOCUMENTS)
        for path in sorted(
            NOTEBOOKS.glob("*.md"),
            key=lambda p: (
                known.index(p.name) if p.name in known else len(known),
                p.name,
            ),
        ):
            name, title, door = DOCUMENTS.get(path.name, (f"{slug(path.stem)}.html", "", "lookup"))
            page = Page(name=name, title=title, source=path.relative_to(ROOT).as_posix())
            self.documents.append((page, door))
            self.pages[name] = page
            self.by_source[page.source] = name
        readme = Page(
            name="readme.html",
            title="README: set up, troubleshooting, workshops",
            source="README.md",
        )
        self.documents.append((readme, "lookup"))
        self.pages[readme.name] = readme
        self.by_source["README.md"] = readme.name
        # a link to the notebooks folder (GitHub lists them) goes to the learning path
        self.by_source["notebooks"] = "index.html#learning-path"

    # ---------------------------------------------------------------- learner edition
    def learner_edition(self) -> None:
        """Written by the workbook's own learner-edition code (tools/notebook_tools.py), exactly
        as `make learner` does."""
        module = "tools.notebook_tools"
        dest = self.out / "learner"
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", module, "learner", tmp]
            cmd += [nb.source for nb in self.notebooks]
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            if done.returncode != 0:
                raise BuildError(
                    f"the learner edition failed ({' '.join(cmd[1:4])} ...):\n"
                    + done.stdout
                    + done.stderr
                )
            dest.mkdir(parents=True, exist_ok=True)
            for nb in self.notebooks:
                made = Path(tmp) / f"{nb.stem}.ipynb"
                if not made.exists():
                    raise BuildError(f"the learner edition did not write {made.name}")
                shutil.copy(made, dest / made.name)

    # ---------------------------------------------------------------- CLI help
    def cli_help(self) -> None:
        """`python -m labs_utils [COMMAND] --help`, run now (tools/site/cli_help.py)."""
        env = {**os.environ, "COLUMNS": "88", "CUDA_VISIBLE_DEVICES": ""}
        done = subprocess.run(
            [sys.executable, str(HERE / "cli_help.py")],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
        )
        if done.returncode != 0:
            raise BuildError(f"python -m labs_utils --help failed:\n{done.stderr}")
        helps = json.loads(done.stdout)
        self.cli = [("", "cli.html", helps.pop(""))]
        self.cli += [(c, f"cli-{c}.html", h) for c, h in helps.items()]

    # ---------------------------------------------------------------- notebooks
    def render_notebooks(self) -> None:
        exporter = CellsExporter(
            template_name="workbook",
            extra_template_basedirs=[str(HERE / "templates" / "nbconvert")],
        )
        exporter.register_preprocessor(ExtractOutputPreprocessor(), enabled=True)
        order = 0
        versions_of_torch = self.pins.get("torch", "?")
        for nb in self.notebooks:
            path = ROOT / nb.source
            node = nbformat.read(path, as_version=4)
            body, res = exporter.from_notebook_node(
                node,
                resources={
                    "output_files_dir": f"{nb.stem}_files",
                    "unique_key": nb.stem,
                },
            )
            if not hasattr(self, "highlight_css"):
                self.highlight_css = "\n".join(res.get("inlining", {}).get("css", []))
            for name, data in res.get("outputs", {}).items():
                target = self.out / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                nb.images += 1
            soup = BeautifulSoup(body, "html.parser")
            nb.soup = soup
            cells = [
                div
                for div in soup.find_all("div", recursive=False)
                if "jp-Cell" in div.get("class", [])
            ]
            if len(cells) != len(node.cells):
                raise BuildError(
                    f"{nb.source}: {len(cells)} rendered cells for {len(node.cells)} cells"
                )
            number_headings(soup, nb, soup)
            render_math(soup, soup)
            for img in soup.find_all("img"):
                img["alt"] = img.get("alt") or "a figure the cell above draws"
                img["loading"] = "lazy"
            first = soup.find("h1")
            nb.title = clean(first.get_text()) if first else nb.stem
            imports = set()
            current: Section | None = None

            def new_section(h: Tag, nb: Notebook = nb) -> Section:
                nonlocal order
                order += 1
                text = clean(h.get_text())
                sec = Section(nb.name, h["id"], text, heading_names(h, text), order)
                nb.sections.append(sec)
                return sec

            for cell, div in zip(node.cells, cells):
                if cell.cell_type == "markdown":
                    box = div.find("div", class_="jp-RenderedMarkdown") or div
                    for el in box.children:
                        if isinstance(el, Tag) and el.name in HEADINGS:
                            current = new_section(el)
                            continue
                        text = el.get_text(" ") if isinstance(el, Tag) else str(el)
                        if current is not None and text.strip():
                            current.parts.append(text)
                    continue
                if cell.cell_type != "code":
                    continue
                for m in re.finditer(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", cell.source, re.M):
                    imports.add(m.group(1))
                tagged = "raises-exception" in cell.metadata.get("tags", [])
                errors = [o for o in cell.outputs if o.output_type == "error"]
                if tagged and not errors:
                    self.problems.append(
                        f"{nb.source}: a cell tagged raises-exception has no error output"
                    )
                if current is None:
                    continue
                current.parts.append(cell.source)
                current.parts += [output_text(o) for o in cell.outputs]
                if tagged:
                    for o in errors:
                        headline, detail = error_lines(o)
                        full = clean(f"{o.ename}: {o.get('evalue', '')}")
                        current.errors.append(full)
                        self.errors.append(
                            {
                                "headline": headline,
                                "detail": detail,
                                "page": nb.name,
                                "anchor": current.anchor,
                                "heading": current.heading,
                                "number": nb.number,
                            }
                        )
            nb.versions = [("torch", versions_of_torch)]
            for mod, dist in IMPORTS.items():
                if mod in imports and dist in self.pins:
                    nb.versions.append((dist, self.pins[dist]))
            python = node.metadata.get("language_info", {}).get("version")
            if python:
                nb.versions.insert(0, ("Python", python))
            nb.verified, nb.verified_how = last_verified(path)

    # ---------------------------------------------------------------- markdown documents
    def render_markdown(self, page: Page, text: str) -> None:
        soup = BeautifulSoup(markdown2html_mistune(text), "html.parser")
        number_headings(soup, page, soup)
        page.soup = soup
        first = soup.find("h1")
        if not page.title:
            page.title = clean(first.get_text()) if first else page.source
        current: Section | None = None
        for el in soup.children:
            if isinstance(el, Tag) and el.name in HEADINGS:
                text_ = clean(el.get_text())
                current = Section(page.name, el["id"], text_, heading_names(el, text_), 10_000)
                page.sections.append(current)
            elif current is not None:
                current.parts.append(el.get_text(" ") if isinstance(el, Tag) else str(el))

    def render_documents(self) -> None:
        for page, _door in self.documents:
            self.render_markdown(page, (ROOT / page.source).read_text())

    # ---------------------------------------------------------------- links
    def rewrite_links(self, page: Page) -> None:
        """Links between notebooks and documents go to their pages (with the heading's anchor
        when the link text names it, "NN · heading"); links to other repository files go to a
        copy in repo/; a link to nothing is a problem."""
        src_dir = PurePosixPath(page.source).parent
        for a in page.soup.find_all("a", href=True):
            href = a["href"]
            parsed = urllib.parse.urlsplit(href)
            if parsed.scheme or href.startswith(("#", "//")):
                continue
            path = urllib.parse.unquote(parsed.path)
            target = os.path.normpath((src_dir / path).as_posix())
            frag = urllib.parse.unquote(parsed.fragment)
            if target not in self.by_source and target.endswith(".md"):
                self.markdown_page(target)
            if target in self.by_source:
                name = self.by_source[target]
                if "#" in name:
                    a["href"] = name
                    continue
                dest = self.pages.get(name)
                if dest is not None and frag:
                    frag = dest.aliases.get(frag, frag)
                if dest is not None and not frag:
                    m = re.match(r"^\s*\d\d\s*\u00b7\s*(.+)$", clean(a.get_text()))
                    if m and m.group(1) in dest.heading_ids:
                        frag = dest.heading_ids[m.group(1)]
                a["href"] = name + (f"#{frag}" if frag else "")
                continue
            copy = self.copy_file(page, href, target)
            if copy:
                a["href"] = copy + (f"#{frag}" if frag else "")
        # images a Markdown cell or document shows from a file (outputs' plots are written
        # by nbconvert already)
        for img in page.soup.find_all("img", src=True):
            src = img["src"]
            if urllib.parse.urlsplit(src).scheme or src.startswith("//"):
                continue
            if isinstance(page, Notebook) and src.startswith(f"{page.stem}_files/"):
                continue
            path = urllib.parse.unquote(urllib.parse.urlsplit(src).path)
            target = os.path.normpath((src_dir / path).as_posix())
            copy = self.copy_file(page, src, target)
            if copy:
                img["src"] = copy

    def copy_file(self, page: Page, url: str, target: str) -> str:
        """A repository file that a page links to or shows, copied to repo/ (its new URL)."""
        file = ROOT / target
        if target.startswith("..") or not file.is_file():
            self.problems.append(f"{page.source}: link to {url!r}: no such file")
            return ""
        copy = f"repo/{target}"
        if copy not in self.copied:
            (self.out / copy).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(file, self.out / copy)
            self.copied.add(copy)
        return copy

    def markdown_page(self, target: str) -> None:
        """Another Markdown file of the repository that a page links to (CONTRIBUTING.md, ...)
        becomes a page too; its own links are followed when it is written."""
        if not (ROOT / target).is_file() or target.startswith(".."):
            return
        page = Page(name=f"{slug(target.replace('/', '-')[:-3])}.html", title="", source=target)
        self.render_markdown(page, (ROOT / target).read_text())
        self.pages[page.name] = page
        self.by_source[target] = page.name
        self.extra.append(page)

    # ---------------------------------------------------------------- pages
    def nav(self) -> dict:
        return {
            "notebooks": [(nb.name, nb.number, nb.title) for nb in self.notebooks],
            "documents": [(p.name, p.title) for p, _ in self.documents],
            "cli": [(page, c or "all commands") for c, page, _ in self.cli],
        }

    def write(self, name: str, template: str, **context) -> None:
        html = self.env.get_template(template).render(
            site_name=SITE_NAME, nav=self.nav(), page_name=name, **context
        )
        (self.out / name).write_text(html)

    def readme_section(self, title: str) -> str:
        text = (ROOT / "README.md").read_text()
        m = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
        return m.group(1).strip() if m else ""

    def write_pages(self) -> None:
        nbs = self.notebooks
        for i, nb in enumerate(nbs):
            self.rewrite_links(nb)
            shutil.copy(ROOT / nb.source, self.out / "notebooks" / f"{nb.stem}.ipynb")
            toc = [
                (s.anchor, s.heading)
                for s in nb.sections
                if nb.soup.find(id=s.anchor).name in ("h2",)
            ]
            self.write(
                nb.name,
                "notebook.html.j2",
                title=nb.title,
                nb=nb,
                body=Markup(str(nb.soup)),
                prev=nbs[i - 1] if i > 0 else None,
                next=nbs[i + 1] if i + 1 < len(nbs) else None,
                toc=toc,
            )
        for page, _door in self.documents:
            self.rewrite_links(page)
            self.write(
                page.name,
                "document.html.j2",
                title=page.title,
                page=page,
                body=Markup(str(page.soup)),
            )
        written = 0
        while written < len(self.extra):  # writing one may add another
            page = self.extra[written]
            self.rewrite_links(page)
            self.write(
                page.name,
                "document.html.j2",
                title=page.title,
                page=page,
                body=Markup(str(page.soup)),
            )
            written += 1
        # landing page: the README's learning path, its links to notebook pages
        path = Page(name="index.html", title=SITE_NAME, source="README.md")
        self.render_markdown(path, self.readme_section("Learning path"))
        path.sections = []
        self.rewrite_links(path)
        doors = {"teach": [], "lookup": []}
        for page, door in self.documents:
            doors[door].append((page.name, page.title))
        readme = self.pages.get("readme.html")
        if readme is not None and "workshops" in readme.ids:
            doors["teach"].append(("readme.html#workshops", "Workshop agendas (README)"))
        # the README's first paragraph, under its title
        readme = (ROOT / "README.md").read_text()
        first = re.search(r"^# .*?\n\s*\n(.*?)\n\s*\n", readme, re.S)
        intro = Markup(markdown2html_mistune(first.group(1))) if first else ""
        self.write(
            "index.html",
            "index.html.j2",
            title=SITE_NAME,
            path_table=Markup(str(path.soup)),
            doors=doors,
            notebooks=nbs,
            intro=intro,
            n_errors=len(self.errors),
        )
        for command, name, text in self.cli:
            used = []
            needle = f"labs_utils {command}".strip()
            for nb in nbs:
                for s in nb.sections:
                    if any(needle in p for p in s.parts):
                        used.append((f"{nb.name}#{s.anchor}", f"{nb.number} · {s.heading}"))
            self.write(
                name,
                "cli.html.j2",
                title=f"python -m labs_utils {command} --help".replace("  ", " "),
                command=command,
                help_text=text,
                used=used,
            )
        self.write_errors()
        self.write("search.html", "search.html.j2", title="Search")
        self.write(
            "downloads.html",
            "downloads.html.j2",
            title="Download the notebooks",
            notebooks=nbs,
        )

    def write_errors(self) -> None:
        rows: dict[tuple[str, str], dict] = {}
        for e in self.errors:
            key = (e["headline"], e["detail"])
            row = rows.setdefault(key, {**e, "where": []})
            where = (f"{e['page']}#{e['anchor']}", f"{e['number']} · {e['heading']}")
            if where not in row["where"]:
                row["where"].append(where)
        ordered = sorted(rows.values(), key=lambda r: (r["headline"].lower(), r["detail"]))
        self.write(
            "errors.html",
            "errors.html.j2",
            title="Error index: the message you have, the section that raises it",
            rows=ordered,
            n_cells=len(self.errors),
        )

    # ---------------------------------------------------------------- search
    def index_names(self) -> None:
        """The error index of notebook 14 is the curated answer to a pasted message: each row's
        message becomes a name of the first section the row links to, so that section ranks
        first for it (a message raised in several notebooks lands on the one the index chose)."""
        guide = next((nb for nb in self.notebooks if nb.number == "14"), None)
        if guide is None:
            return
        by_title = {f"{nb.number} · {s.heading}": s for nb in self.notebooks for s in nb.sections}
        own = {s.anchor: s for s in guide.sections}
        for cell in nbformat.read(ROOT / guide.source, as_version=4).cells:
            if cell.cell_type != "markdown":
                continue
            for row in re.findall(
                r"^\| `([^`]+)`[^|]*\|[^|]*\| *\[([^\]]+)\]\(([^)]*)\)", cell.source, re.M
            ):
                message, text, target = row
                phrase = " ".join(message.split("...")[0].lower().split())
                title = clean(text.replace("`", ""))
                sec = by_title.get(title) or own.get(target.lstrip("#"))
                if len(phrase) >= 12 and sec is not None and phrase not in sec.names:
                    sec.names.append(phrase)

    def write_search_index(self) -> None:
        self.index_names()
        sections = []
        pages = [*self.notebooks, *(p for p, _ in self.documents)]
        for page in pages:
            prefix = f"{page.number} · " if isinstance(page, Notebook) else ""
            for s in page.sections:
                sections.append(
                    {
                        "t": prefix + s.heading,
                        "p": page.title,
                        "u": f"{s.page}#{s.anchor}",
                        "h": s.heading,
                        "n": s.names,
                        "x": clean(" ".join(s.parts)),
                        "e": " \n ".join(s.errors),
                        "o": s.order,
                    }
                )
        for command, name, text in self.cli:
            title = f"python -m labs_utils {command} --help".replace("  ", " ")
            sections.append(
                {
                    "t": title,
                    "p": "Command line",
                    "u": name,
                    "h": title,
                    "n": [f"labs_utils {command}".strip()],
                    "x": clean(text),
                    "e": "",
                    "o": 20_000,
                }
            )
        data = json.dumps({"sections": sections}, ensure_ascii=False, separators=(",", ":"))
        (self.out / "static" / "search-index.js").write_text(
            "// Generated by tools/site/build.py: one entry per section.\n"
            f"window.WORKBOOK_SEARCH_INDEX = {data};\n"
        )

    # ---------------------------------------------------------------- static files
    def static(self) -> None:
        static = self.out / "static"
        static.mkdir(parents=True, exist_ok=True)
        for f in (HERE / "static").iterdir():
            shutil.copy(f, static / f.name)
        # JupyterLab's stylesheet, from nbconvert's own lab template (no CDN, no download)
        paths = [Path(p) for p in HTMLExporter(template_name="lab").template_paths]
        css = []
        for name in ("index.css", "theme-light.css"):
            found = [p / "static" / name for p in paths if (p / "static" / name).exists()]
            if not found:
                raise BuildError(f"nbconvert's lab template has no static/{name}")
            css.append(found[0].read_text())
        (static / "jupyter.css").write_text("\n".join(css))
        (self.out / "notebooks").mkdir(exist_ok=True)

    # ---------------------------------------------------------------- checks
    def check_site(self) -> None:
        """Every local link, image, script and stylesheet resolves (file and #anchor); nothing is
        loaded from another host."""
        pages: dict[str, _Links] = {}
        for f in sorted(self.out.rglob("*.html")):
            rel = f.relative_to(self.out).as_posix()
            pages[rel] = _Links()
            pages[rel].feed(f.read_text())
        for rel, found in pages.items():
            base = PurePosixPath(rel).parent
            for tag, attr, url in found.urls:
                parsed = urllib.parse.urlsplit(url)
                if parsed.scheme in ("http", "https") or url.startswith("//"):
                    if tag != "a":
                        self.problems.append(
                            f"{rel}: <{tag} {attr}={url!r}> loads from another host"
                        )
                    continue
                if parsed.scheme in ("data", "mailto"):
                    continue
                if parsed.scheme:
                    self.problems.append(f"{rel}: unexpected URL {url!r}")
                    continue
                path = urllib.parse.unquote(parsed.path)
                target = os.path.normpath((base / path).as_posix()) if path else rel
                if not (self.out / target).is_file():
                    self.problems.append(f"{rel}: {url!r} points to a missing file")
                    continue
                frag = urllib.parse.unquote(parsed.fragment)
                if frag and target in pages and frag not in pages[target].ids:
                    self.problems.append(f"{rel}: {url!r}: no #{frag} in {target}")
            for tag in found.remote_styles:
                self.problems.append(f"{rel}: a style attribute in <{tag}> loads a URL")

    # ---------------------------------------------------------------- all
    def build(self) -> None:
        if self.out.exists():
            shutil.rmtree(self.out)
        self.out.mkdir(parents=True)
        self.collect()
        self.static()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            cli = pool.submit(self.cli_help)
            learner = pool.submit(self.learner_edition)
            self.render_notebooks()
            self.render_documents()
            cli.result()
            learner.result()
        self.write_pages()
        self.write_search_index()
        (self.out / "static" / "highlight.css").write_text(getattr(self, "highlight_css", ""))
        self.check_site()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="build/site", help="output folder")
    args = parser.parse_args(argv)
    out = (ROOT / args.out).resolve() if not Path(args.out).is_absolute() else Path(args.out)
    start = time.time()
    builder = Builder(out)
    try:
        builder.build()
    except BuildError as e:
        print(f"site: build failed: {e}", file=sys.stderr)
        return 1
    if builder.problems:
        print(
            f"site: {len(builder.problems)} problem(s), warnings are errors:",
            file=sys.stderr,
        )
        for p in builder.problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    print(
        f"site: {len(builder.notebooks)} notebooks, {len(builder.documents)} documents, "
        f"{len(builder.errors)} error cells, {len(builder.cli)} command pages -> "
        f"{shown}/index.html ({time.time() - start:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
