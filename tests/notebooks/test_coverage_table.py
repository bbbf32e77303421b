"""notebooks/COVERAGE.md agrees with the notebooks: every section it links exists, and its summary
counts match its rows."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
TEXT = (NOTEBOOKS / "COVERAGE.md").read_text()
LINK = re.compile(r"\[(\d\d) · ([^\]]+)\]\((\d\d_[a-z0-9_]+\.ipynb)\)")


def _headings(notebook: str) -> set[str]:
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    out = set()
    for cell in cells:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("#"):
                    out.add(line.lstrip("#").strip())
    return out


@pytest.mark.parametrize("number,heading,notebook", sorted(set(LINK.findall(TEXT))))
def test_every_linked_section_exists(number, heading, notebook):
    assert notebook.startswith(number), f"{number} · {heading} links to {notebook}"
    assert (NOTEBOOKS / notebook).is_file(), notebook
    assert heading in _headings(notebook), f"no heading {heading!r} in {notebook}"


def test_summary_counts_match_the_rows():
    rows = re.findall(
        r"^\| (\d\.\d+) \| doc \d \|.*\| \*{0,2}(holds|wrong|misleading|outdated|not tested)\*{0,2} \|",
        TEXT,
        flags=re.M,
    )
    verdicts = [v for _, v in rows]
    summary = re.search(
        r"(\d+) rows \((\d+) from document 1, (\d+) from document 2\): \*\*(\d+) claims hold\*\*",
        TEXT,
    )
    assert summary, "the summary line has changed form; update this test"
    total, doc1, doc2, holds = map(int, summary.groups())
    assert total == len(rows)
    assert doc1 == sum(1 for n, _ in rows if n.startswith("1."))
    assert doc2 == sum(1 for n, _ in rows if n.startswith("2."))
    assert holds == verdicts.count("holds")
    for verdict in ("wrong", "misleading", "outdated"):
        m = re.search(rf"(\d+)\s+{verdict}\s+\(([^)]*)\)", TEXT)
        listed = [n for n, v in rows if v == verdict]
        if listed:
            assert m, f"the summary does not count the {verdict} rows"
            assert int(m.group(1)) == len(listed) and sorted(
                re.split(r",\s*", m.group(2))
            ) == sorted(listed), verdict
