"""The README's learning path and the instructor kit stay true to the notebooks: every notebook
has its row (with the minutes of its header) and its kit section (teaching + exercise minutes
adding up to them), and every relative link of the two pages points to a file that exists."""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
README = (ROOT / "README.md").read_text()
KIT = (ROOT / "notebooks" / "INSTRUCTORS.md").read_text()


def _header(path: Path) -> tuple[int, int]:
    """The notebook's minutes (its header's **Time:**) and its number of exercises."""
    cells = json.loads(path.read_text())["cells"]
    text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    code = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return int(re.search(r"\*\*Time:\*\* (\d+) minutes", text).group(1)), code.count(
        "### BEGIN SOLUTION"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name[:2])
def test_every_notebook_has_its_row_and_its_kit_section(path):
    minutes, exercises = _header(path)
    row = re.search(
        rf"^\| {path.name[:2]} \| \[`{path.stem}`\]\(notebooks/{path.name}\) \|.*\| (\d+) \|[^|]*\|$",
        README,
        re.M,
    )
    assert row, f"README's learning path has no row for {path.name}"
    assert int(row.group(1)) == minutes, (
        f"{path.name}: README says {row.group(1)}, header {minutes}"
    )
    kit = re.search(
        rf"^### {path.name[:2]} · .*\((\d+) min: (\d+) teaching, (\d+) exercises\)$",
        KIT,
        re.M,
    )
    assert kit, f"notebooks/INSTRUCTORS.md has no section for {path.name}"
    total, teaching, exercise = map(int, kit.groups())
    assert (total, exercise) == (minutes, 4 * exercises), kit.group(0)
    assert teaching + exercise == total


@pytest.mark.parametrize("page", ["README.md", "notebooks/INSTRUCTORS.md", "CONTRIBUTING.md"])
def test_relative_links_point_to_files_that_exist(page):
    path = ROOT / page
    text = re.sub(r"^\s*```.*?^\s*```", "", path.read_text(), flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)  # examples in code, not links
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z][a-z0-9+.-]*:|#", target):
            continue
        assert (path.parent / target.split("#")[0]).exists(), f"{page}: {target}"
