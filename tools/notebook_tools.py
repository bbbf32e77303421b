"""Maintenance tools for the workbook's notebooks (used by the Makefile).

    python -m tools.notebook_tools sanitize notebooks/*.ipynb
    python -m tools.notebook_tools learner OUT_DIR notebooks/*.ipynb

``learner`` writes the learner edition of each notebook to ``OUT_DIR``: every solution between
``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes ``pass`` with a one-line hint (the
cell's ``# Hint:`` comment when it has one), and all outputs and execution counts are cleared.

    python -m tools.notebook_tools reading-time notebooks/*.ipynb

``reading-time`` estimates the minutes of a careful read-through of each notebook from what it
contains (see ``reading_minutes`` for the model and its rates).

``sanitize`` merges printed text that the kernel sent in several chunks (so two runs store the
same JSON), and rewrites the stored tracebacks of error outputs so they carry no machine-specific
paths (``/home/me/.venv/lib/python3.11/site-packages/torch/...`` becomes
``.../site-packages/torch/...``). nbval does not compare tracebacks, but GitHub shows them, and
the workbook never shows one machine's paths.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

__all__ = [
    "sanitize_text",
    "sanitize_notebook",
    "strip_solutions",
    "learner_edition",
    "reading_minutes",
    "main",
]

_SITE = re.compile(
    r"(?:[A-Za-z]:)?[/\\][^\s\"'<>:]*?[/\\](site-packages|dist-packages)[/\\]"
)
_STDLIB = re.compile(
    r"(?:[A-Za-z]:)?[/\\][^\s\"'<>:]*?[/\\](lib[/\\]python3\.\d+)[/\\]"
)
_ADDR = re.compile(r" at 0x[0-9a-fA-F]{6,}")


def sanitize_text(text: str, root: str | None = None) -> str:
    """Replace absolute paths of installed packages, the stdlib and ``root`` with neutral ones."""
    text = _SITE.sub(lambda m: f".../{m.group(1)}/", text)
    text = _STDLIB.sub(lambda m: f".../{m.group(1)}/", text)
    if root:
        text = text.replace(root.rstrip("/") + "/", "")
    return _ADDR.sub(" at 0x...", text)


def _coalesce_streams(outputs: list[dict]) -> list[dict]:
    """Merge consecutive stdout (or stderr) chunks into one output, split by lines.

    How a kernel chunks printed text depends on timing, so without this two runs of the same
    notebook store the same text in different JSON.
    """
    merged: list[dict] = []
    for out in outputs:
        if (
            out.get("output_type") == "stream"
            and merged
            and merged[-1].get("output_type") == "stream"
            and merged[-1].get("name") == out.get("name")
        ):
            merged[-1]["text"] = "".join(merged[-1]["text"]) + "".join(out["text"])
        else:
            merged.append(dict(out))
    for out in merged:
        if out.get("output_type") == "stream":
            out["text"] = "".join(out["text"]).splitlines(keepends=True)
    return merged


def sanitize_notebook(path: str | Path) -> bool:
    """Sanitize the tracebacks of one notebook in place; returns True when it changed."""
    path = Path(path)
    raw = path.read_text(encoding="utf-8")
    nb = json.loads(raw)
    root = str(Path.cwd().resolve())
    for cell in nb.get("cells", []):
        if cell.get("outputs"):
            cell["outputs"] = _coalesce_streams(cell["outputs"])
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                out["traceback"] = [
                    sanitize_text(line, root) for line in out.get("traceback", [])
                ]
    new = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if new != raw:
        path.write_text(new, encoding="utf-8")
        return True
    return False


BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
_DEFAULT_HINT = "write your answer here, then run the check below"


def strip_solutions(source: str, where: str = "cell") -> str:
    """Replace each BEGIN/END SOLUTION block of a cell's source with ``pass`` and a hint.

    The hint is the text of the last ``# Hint:`` comment above the block, if any. The
    placeholder keeps the block's indentation, so a solution inside a function body becomes
    ``pass`` (the function returns None, which the checks report as "not attempted yet").
    """
    lines = source.split("\n")
    out: list[str] = []
    inside = False
    hint = _DEFAULT_HINT
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("# Hint:") and not inside:
            hint = stripped[len("# Hint:") :].strip() or _DEFAULT_HINT
        if stripped.startswith(BEGIN):
            if inside:
                raise ValueError(
                    f"{where}, line {number}: {BEGIN} inside another solution; close it with {END}"
                )
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}pass  # Your turn: {hint}")
            continue
        if stripped.startswith(END):
            if not inside:
                raise ValueError(
                    f"{where}, line {number}: {END} without a {BEGIN} above it"
                )
            inside = False
            continue
        if not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN} is never closed; add a {END} line")
    return "\n".join(out)


def learner_edition(src: str | Path, dst: str | Path) -> int:
    """Write the learner edition of notebook ``src`` to ``dst``; returns the number of solutions removed."""
    src, dst = Path(src), Path(dst)
    nb = json.loads(src.read_text(encoding="utf-8"))
    removed = 0
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        source = (
            "".join(cell["source"])
            if isinstance(cell["source"], list)
            else cell["source"]
        )
        if BEGIN in source:
            removed += source.count(BEGIN)
            source = strip_solutions(source, where=f"{src.name}, cell {index}")
        cell["source"] = source.splitlines(keepends=True)
        cell["outputs"] = []
        cell["execution_count"] = None
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(
        json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return removed


# Assumed rates of a careful read-through that runs every cell (slow technical reading; not yet
# calibrated against timed human read-throughs: instructors, please report yours).
PROSE_WORDS_PER_MINUTE = 130
SECONDS_PER_CODE_LINE = 4
SECONDS_PER_OUTPUT_LINE = 1.5
MINUTES_PER_EXERCISE = 4


def reading_minutes(path: str | Path) -> dict[str, float]:
    """Estimate the minutes a careful read-through of a notebook takes.

    Prose is read at ``PROSE_WORDS_PER_MINUTE``, each non-empty code line costs
    ``SECONDS_PER_CODE_LINE`` (reading and running it), each line of stored text output
    ``SECONDS_PER_OUTPUT_LINE``, each plot 30 s, each exercise ``MINUTES_PER_EXERCISE``.
    """
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    words = code = output = plots = exercises = 0
    for cell in nb.get("cells", []):
        source = (
            "".join(cell["source"])
            if isinstance(cell["source"], list)
            else cell["source"]
        )
        if cell.get("cell_type") == "markdown":
            words += len(source.split())
            continue
        code += sum(
            1
            for line in source.splitlines()
            if line.strip() and not line.strip().startswith("###")
        )
        exercises += source.count(BEGIN)
        for out in cell.get("outputs", []):
            if "image/png" in out.get("data", {}):
                plots += 1
            text = (
                out.get("text")
                or out.get("data", {}).get("text/plain")
                or out.get("evalue")
                or ""
            )
            text = "".join(text) if isinstance(text, list) else text
            output += min(len(text.splitlines()), 25)
    minutes = (
        words / PROSE_WORDS_PER_MINUTE
        + code * SECONDS_PER_CODE_LINE / 60
        + output * SECONDS_PER_OUTPUT_LINE / 60
        + plots * 0.5
        + exercises * MINUTES_PER_EXERCISE
    )
    return {
        "words": words,
        "code_lines": code,
        "output_lines": output,
        "plots": plots,
        "exercises": exercises,
        "minutes": minutes,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    usage = (
        "usage: python -m tools.notebook_tools sanitize NOTEBOOK.ipynb [...]\n"
        "       python -m tools.notebook_tools learner OUT_DIR NOTEBOOK.ipynb [...]\n"
        "       python -m tools.notebook_tools reading-time NOTEBOOK.ipynb [...]"
    )
    if len(argv) >= 2 and argv[0] == "reading-time":
        for name in argv[1:]:
            if not Path(name).is_file():
                print(f"{name}: no such notebook", file=sys.stderr)
                return 2
            r = reading_minutes(name)
            print(
                f"{Path(name).stem}: {r['minutes']:.0f} min ({r['words']} words, {r['code_lines']} code lines, "
                f"{r['output_lines']} output lines, {r['plots']} plots, {r['exercises']} exercises)"
            )
        return 0
    if (
        len(argv) < 2
        or argv[0] not in ("sanitize", "learner")
        or (argv[0] == "learner" and len(argv) < 3)
    ):
        print(usage, file=sys.stderr)
        return 2
    names = argv[1:] if argv[0] == "sanitize" else argv[2:]
    for name in names:
        if not Path(name).is_file():
            print(f"{name}: no such notebook", file=sys.stderr)
            return 2
    if argv[0] == "sanitize":
        for name in names:
            sanitize_notebook(name)
        return 0
    out_dir = Path(argv[1])
    for name in names:
        try:
            n = learner_edition(name, out_dir / Path(name).name)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(
            f"{(out_dir / Path(name).name).as_posix()}: {n} solution(s) replaced by placeholders"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
