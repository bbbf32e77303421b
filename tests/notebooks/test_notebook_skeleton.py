"""Every notebook has the same skeleton (CONTRIBUTING.md), so a new one cannot drift: the header
(title, promise, Objectives, Time, Prerequisites, Sources), Setup, numbered sections, Your turn with
checked exercises, Key points, Next; code lines of at most 88 characters."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
# The template a new notebook starts from (CONTRIBUTING.md, "Add a notebook") keeps the same
# skeleton, with NN where a notebook has its number. pytest does not run it (pyproject addopts).
TEMPLATE = NOTEBOOKS[0].parent / "_template.ipynb"
NOTEBOOKS.append(TEMPLATE)


def _number(path):
    return "NN" if path == TEMPLATE else path.name[:2]


LAB = "12_capstone_lab.ipynb"  # the lab's sections are its faults, each fixed and checked


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _src(cell):
    return "".join(cell["source"])


def _h2(cells):
    return [
        line[3:].strip()
        for c in cells
        if c["cell_type"] == "markdown"
        for line in _src(c).splitlines()
        if line.startswith("## ")
    ]


def _bullets(text):
    return [line for line in text.splitlines() if line.startswith("- ")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_number)
def test_header(path):
    head = _src(_cells(path)[0])
    m = re.match(r"# (\d\d|NN) · \S", head)
    assert m and m.group(1) == _number(path), (
        f"{path.name}: first line must be '# {_number(path)} · Title'"
    )
    paragraphs = [p.strip() for p in head.split("\n\n") if p.strip()]
    assert (
        paragraphs[1].startswith("*")
        and paragraphs[1].endswith("*")
        and not paragraphs[1].startswith("**")
    ), f"{path.name}: the second paragraph is the one-line promise, in italics"
    assert "## Objectives" in head, f"{path.name}: no Objectives in the header cell"
    objectives = head.split("## Objectives", 1)[1]
    assert "By the end of this" in objectives
    assert 3 <= len(_bullets(objectives)) <= 6, f"{path.name}: 3 to 6 objectives"
    assert re.search(
        r"\*\*Time:\*\* \d+ minutes · \*\*Prerequisites:\*\* .+ · \*\*Sources:\*\* (doc [12]|going further)",
        head,
        flags=re.S,
    ), (
        f"{path.name}: the header ends with **Time:** N minutes · **Prerequisites:** … · **Sources:** …"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_number)
def test_sections(path):
    cells = _cells(path)
    h2 = _h2(cells)
    assert h2[:2] == ["Objectives", "Setup"], (
        f"{path.name}: starts with Objectives, then Setup: {h2[:2]}"
    )
    pattern = r"Fault (\d+): " if path.name == LAB else r"(\d+)\. "
    numbers = [int(m.group(1)) for h in h2 if (m := re.match(pattern, h))]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 3, (
        f"{path.name}: numbered sections 1, 2, 3, … in order, got {numbers}"
    )
    tail = ["Key points", "Next"] if path.name == LAB else ["Your turn", "Key points", "Next"]
    ends = ["Next" if h.startswith("Next") else h for h in h2[-len(tail) :]]
    assert ends == tail, f"{path.name}: ends with {', '.join(tail)}; got {h2[-4:]}"
    key_points = next(_src(c) for c in cells if _src(c).lstrip().startswith("## Key points"))
    assert 3 <= len(_bullets(key_points)) <= 8, f"{path.name}: 3 to 8 key points"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_number)
def test_every_exercise_is_checked(path):
    code = [c for c in _cells(path) if c["cell_type"] == "code"]
    solutions = [i for i, c in enumerate(code) if "### BEGIN SOLUTION" in _src(c)]
    assert len(solutions) >= 2, f"{path.name}: at least two exercises"
    for i in solutions:
        later = [_src(c) for c in code[i : i + 3]]
        assert any(re.search(r"\bcheck\.\w+\(", s) for s in later), (
            f"{path.name}: the exercise in code cell {i} has no check cell right after it"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_number)
def test_code_is_readable_at_once(path):
    for i, c in enumerate(c for c in _cells(path) if c["cell_type"] == "code"):
        lines = _src(c).splitlines()
        too_long = [line for line in lines if len(line) > 88]
        assert not too_long, (
            f"{path.name}: code cell {i} has lines over 88 characters: {too_long[0]!r}"
        )
        assert len(lines) <= 40, (
            f"{path.name}: code cell {i} has {len(lines)} lines; split it where the idea splits"
        )
