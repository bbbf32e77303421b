"""Tools for the workbook's notebooks (used by the Makefile, run from the repository root).

    python -m tools.notebook_tools sanitize notebooks/*.ipynb
    python -m tools.notebook_tools learner learner [--adopt build/learner] [NOTEBOOK ...]
    python -m tools.notebook_tools learner-reset learner (--all | NOTEBOOK ...) [--yes]
    python -m tools.notebook_tools reading-time notebooks/*.ipynb
    python -m tools.notebook_tools links [--dry-run] notebooks/*.ipynb

``learner`` keeps the learner edition in a folder (``learner/`` in the Makefile): every
solution between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes ``pass`` with a
one-line hint (the cell's ``# Hint:`` comment when it has one), and all outputs and execution
counts are cleared. It never overwrites a learner's work: a notebook missing from the folder is
added; one the learner has not changed is refreshed when its lesson changed; one the learner has
changed is kept, and a changed lesson is written beside it as ``NN_x.updated.ipynb``. It knows
which is which from the fingerprint (cells' sources and outputs) of what it last wrote, kept in
``.learner-state.json`` in the folder. ``learner-reset`` replaces notebooks with a fresh copy
explicitly, after saying what it discards, and keeps a copy in ``backups/<time>/``.

``reading-time`` estimates the minutes of a careful read-through of each notebook from what it
contains (see ``reading_minutes`` for the model and its rates).

``sanitize`` merges printed text that the kernel sent in several chunks (so two runs store the
same JSON), and rewrites the stored tracebacks of error outputs so they carry no machine-specific
paths (``/home/me/.venv/lib/python3.11/site-packages/torch/...`` becomes
``.../site-packages/torch/...``). In a cell tagged ``raises-exception`` the traceback starts with
its last line (the message the lesson is about), then the full traceback. nbval does not
compare tracebacks, but GitHub and JupyterLab show them, and the workbook never shows one
machine's paths.

``links`` turns a backticked notebook name in a markdown cell (`` `02_architecture_mismatch` ``,
with or without ``.ipynb``) into a relative link to that notebook, which works in ``notebooks/``
and in the learner folder alike.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import time
from pathlib import Path

__all__ = [
    "sanitize_text",
    "sanitize_notebook",
    "strip_solutions",
    "learner_edition",
    "learner_notebook",
    "fingerprint",
    "sync_learner",
    "reset_learner",
    "message_first",
    "link_notebook_names",
    "reading_minutes",
    "main",
]

_SITE = re.compile(r"(?:[A-Za-z]:)?[/\\][^\s\"'<>:]*?[/\\](site-packages|dist-packages)[/\\]")
_STDLIB = re.compile(r"(?:[A-Za-z]:)?[/\\][^\s\"'<>:]*?[/\\](lib[/\\]python3\.\d+)[/\\]")
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


# The line put between the message and the full traceback of an intended error (dim grey).
MESSAGE_FIRST_NOTE = (
    "\x1b[2m(the message first, as its last line reads; the full traceback follows)\x1b[0m"
)


def message_first(traceback: list[str]) -> list[str]:
    """The traceback of an intended error with its last line (the message) shown first.

    IPython stores a traceback as a list of (coloured) lines whose last one is
    ``ExceptionType: message``; here that line comes first, then a short note, then the full
    traceback unchanged. A traceback already in this form is returned as it is.
    """
    if len(traceback) < 2 or (
        len(traceback) >= 3 and traceback[1] == MESSAGE_FIRST_NOTE and traceback[0] == traceback[-1]
    ):
        return list(traceback)
    return [traceback[-1], MESSAGE_FIRST_NOTE, *traceback]


def sanitize_notebook(path: str | Path) -> bool:
    """Sanitize the outputs of one notebook in place; returns True when it changed.

    Printed text chunks are merged, tracebacks lose machine paths, and in a cell tagged
    ``raises-exception`` the traceback shows its message first (``message_first``).
    """
    path = Path(path)
    raw = path.read_text(encoding="utf-8")
    nb = json.loads(raw)
    root = str(Path.cwd().resolve())
    for cell in nb.get("cells", []):
        if cell.get("outputs"):
            cell["outputs"] = _coalesce_streams(cell["outputs"])
        intended = "raises-exception" in cell.get("metadata", {}).get("tags", [])
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                traceback = [sanitize_text(line, root) for line in out.get("traceback", [])]
                out["traceback"] = message_first(traceback) if intended else traceback
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
                raise ValueError(f"{where}, line {number}: {END} without a {BEGIN} above it")
            inside = False
            continue
        if not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{where}: {BEGIN} is never closed; add a {END} line")
    return "\n".join(out)


ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
STATE_FILE = ".learner-state.json"
UPDATED_SUFFIX = ".updated.ipynb"


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _dumps(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


# A relative link in markdown to a file of notebooks/ other than a notebook (LOADERS.md,
# COVERAGE.md): the learner folder holds only the notebooks, so the link goes to notebooks/.
_LOCAL_LINK = re.compile(
    r"\]\((?!(?:[a-z][a-z0-9+.-]*:|#|/|\.\./|\d\d_[a-z0-9_]+\.ipynb(?:#[^)\s]*)?\)))"
)


def learner_notebook(src: str | Path) -> tuple[dict, int]:
    """The learner edition of notebook ``src`` and the number of solutions it removed.

    Links to notebooks and ``../`` paths work from the learner folder as they are (it sits
    beside ``notebooks/``); a link to another file of ``notebooks/`` is pointed there.
    """
    src = Path(src)
    nb = json.loads(src.read_text(encoding="utf-8"))
    removed = 0
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "markdown":
            text = _source(cell)
            linked = _LOCAL_LINK.sub("](../notebooks/", text)
            if linked != text:
                cell["source"] = linked.splitlines(keepends=True)
        if cell.get("cell_type") != "code":
            continue
        source = _source(cell)
        if BEGIN in source:
            removed += source.count(BEGIN)
            source = strip_solutions(source, where=f"{src.name}, cell {index}")
        cell["source"] = source.splitlines(keepends=True)
        cell["outputs"] = []
        cell["execution_count"] = None
    return nb, removed


def learner_edition(src: str | Path, dst: str | Path) -> int:
    """Write the learner edition of notebook ``src`` to ``dst``; returns the solutions removed.

    Overwrites ``dst``: the learner folder goes through ``sync_learner`` instead.
    """
    nb, removed = learner_notebook(src)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(_dumps(nb), encoding="utf-8")
    return removed


def fingerprint(nb: dict) -> str:
    """A hash of what a learner can change in a notebook: each cell's type, source, outputs.

    Metadata, execution counts and JSON layout are left out, so a notebook that JupyterLab
    merely opened and saved again keeps its fingerprint; a typed answer or a run cell does not.
    """
    cells = [[c.get("cell_type"), _source(c), c.get("outputs", [])] for c in nb.get("cells", [])]
    blob = json.dumps(cells, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def _fingerprint_file(path: Path) -> str | None:
    """The fingerprint of the notebook at ``path``; None when it is not a readable notebook."""
    try:
        return fingerprint(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def _load_state(folder: Path) -> dict:
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"notebooks": {}}
    state.setdefault("notebooks", {})
    return state


def _save_state(folder: Path, state: dict) -> None:
    state["about"] = (
        "make learner: the fingerprint of each notebook as it last wrote it; a notebook whose "
        "fingerprint differs holds your edits and is never overwritten"
    )
    (folder / STATE_FILE).write_text(
        json.dumps(state, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )


def _updated_name(name: str) -> str:
    return name.removesuffix(".ipynb") + UPDATED_SUFFIX


def sync_learner(
    folder: str | Path,
    sources: list[str | Path],
    adopt: str | Path | None = None,
    say=print,
) -> dict[str, list[str]]:
    """Bring the learner folder up to date without destroying anything the learner wrote.

    For each source notebook: missing from ``folder`` -> added; unchanged by the learner ->
    refreshed if its lesson changed; changed by the learner -> kept, and a changed lesson is
    written beside it as ``NN_x.updated.ipynb``. ``adopt``: a folder of an earlier learner
    edition (``build/learner/``) whose notebooks are copied in, once, when ``folder`` is new.
    Returns the names by outcome: added, refreshed, kept, offered, unchanged.
    """
    folder = Path(folder)
    outcome: dict[str, list[str]] = {
        k: [] for k in ("added", "refreshed", "kept", "offered", "unchanged")
    }
    new_folder = not (folder / STATE_FILE).exists()
    folder.mkdir(parents=True, exist_ok=True)
    state = _load_state(folder)
    if new_folder and adopt and Path(adopt).is_dir():
        for old in sorted(Path(adopt).glob("[0-9][0-9]_*.ipynb")):
            if not (folder / old.name).exists():
                shutil.copy2(old, folder / old.name)
                say(f"{old.as_posix()}: copied to {folder.as_posix()}/ (your earlier work)")
    for src in map(Path, sources):
        nb, _ = learner_notebook(src)
        fresh = fingerprint(nb)
        dst = folder / src.name
        entry = state["notebooks"].setdefault(src.name, {})
        if not dst.exists():
            dst.write_text(_dumps(nb), encoding="utf-8")
            entry["written"] = fresh
            outcome["added"].append(src.name)
            continue
        current = _fingerprint_file(dst)
        updated = folder / _updated_name(src.name)
        if current == fresh:
            entry["written"] = fresh  # up to date (or the learner undid every change)
            if updated.exists() and _fingerprint_file(updated) == entry.get("offered"):
                updated.unlink()
            outcome["unchanged"].append(src.name)
        elif current is not None and current == entry.get("written"):
            dst.write_text(_dumps(nb), encoding="utf-8")  # not edited: take the new lesson
            entry["written"] = fresh
            outcome["refreshed"].append(src.name)
        elif entry.get("written") == fresh:
            outcome["kept"].append(src.name)  # edited, and the lesson has not changed since
        else:
            # Edited, and the lesson changed (or nothing is known about this copy): keep the
            # learner's notebook, offer the new lesson beside it.
            if updated.exists() and _fingerprint_file(updated) not in (
                entry.get("offered"),
                fresh,
            ):
                say(
                    f"{updated.as_posix()}: you changed this copy too; it is kept, and the "
                    f"newest lesson is not written (rename it to get the newest)"
                )
            else:
                updated.write_text(_dumps(nb), encoding="utf-8")
                entry["offered"] = fresh
            outcome["offered"].append(src.name)
    _save_state(folder, state)
    where = folder.as_posix()
    for name in outcome["added"]:
        say(f"{where}/{name}: added")
    for name in outcome["refreshed"]:
        say(f"{where}/{name}: refreshed with the new lesson (you had not changed it)")
    for name in outcome["offered"]:
        say(
            f"{where}/{name}: kept with your work; its lesson changed, and the new version is "
            f"{where}/{_updated_name(name)} (compare them, or take it with "
            f"make learner-reset NB={name[:2]})"
        )
    if new_folder:
        say(
            f"{where}/ is your copy of the workbook: make learner, make learner-lab, make clean "
            "and git pull never overwrite a notebook you changed there"
        )
    kept = len(outcome["kept"]) + len(outcome["offered"])
    say(
        f"learner edition in {where}/: {len(outcome['added'])} added, "
        f"{len(outcome['refreshed'])} refreshed, {kept} with your work kept, "
        f"{len(outcome['unchanged'])} already up to date"
    )
    return outcome


def reset_learner(
    folder: str | Path,
    sources: list[str | Path],
    say=print,
    confirm=None,
    now: float | None = None,
) -> list[str]:
    """Replace the learner's copies of ``sources`` with fresh ones, keeping a backup.

    Says first which notebooks hold work that will be discarded and where the backup goes
    (``folder/backups/<YYYYmmdd-HHMMSS>/``); ``confirm(question) -> bool`` may refuse (then
    nothing changes). Returns the names reset.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = _load_state(folder)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    backup = folder / "backups" / stamp
    plan = []
    for src in map(Path, sources):
        nb, _ = learner_notebook(src)
        dst, updated = folder / src.name, folder / _updated_name(src.name)
        edited = dst.exists() and _fingerprint_file(dst) != fingerprint(nb)
        plan.append((src, nb, dst, updated, edited))
    losing = [p for p in plan if p[4]]
    if losing:
        say(f"make learner-reset discards your work in {len(losing)} notebook(s):")
        for _, _, dst, _, _ in losing:
            say(f"  {dst.as_posix()}")
        say(f"A copy of each goes to {backup.as_posix()}/ first.")
    else:
        say("No notebook to reset holds work of yours; nothing is discarded.")
    if losing and confirm is not None and not confirm("Reset them? [y/N] "):
        say("Nothing changed.")
        return []
    for src, nb, dst, updated, edited in plan:
        for path in (dst, updated):
            if path.exists() and (edited or path is updated):
                backup.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, backup / path.name)
        updated.unlink(missing_ok=True)
        dst.write_text(_dumps(nb), encoding="utf-8")
        state["notebooks"][src.name] = {"written": fingerprint(nb)}
        say(f"{dst.as_posix()}: fresh copy of the lesson")
    _save_state(folder, state)
    return [p[0].name for p in plan]


def resolve_notebooks(
    names: list[str], folder: Path = NOTEBOOKS, lessons: bool = False
) -> list[Path]:
    """Notebooks from paths, or (``lessons``) from names, stems or numbers; ValueError if unknown.

    An existing file is taken as it is, unless ``lessons``: then a name is looked up in
    ``folder`` (``notebooks/``) first, so ``learner/01_x.ipynb`` and ``01`` mean the lesson
    ``notebooks/01_x.ipynb``.
    """
    found = []
    for name in names:
        path = Path(name)
        if path.is_file() and not lessons:
            found.append(path)
            continue
        stem = path.name.removesuffix(".ipynb").removesuffix(".updated")
        matches = [
            m
            for m in sorted(folder.glob(f"{stem}*.ipynb"))
            if m.name[:2].isdigit() and ".updated" not in m.name
        ]
        exact = [m for m in matches if m.stem == stem]
        if len(exact) == 1 or len(matches) == 1:
            found.append((exact or matches)[0])
        elif path.is_file():
            found.append(path)
        else:
            raise ValueError(
                f"{name}: no such notebook"
                if not matches
                else f"{name}: several notebooks match ({', '.join(m.name for m in matches)})"
            )
    return found


# A backticked notebook name in markdown: `02_architecture_mismatch`, with .ipynb or
# notebooks/ if written so; not one that is already a link's text ([`02_x`](02_x.ipynb)).
_NOTEBOOK_NAME = re.compile(
    r"(?<!\[)`(?:notebooks/)?(?P<stem>\d\d_[a-z0-9_]+)(?:\.ipynb)?`(?!\]\()"
)


def link_notebook_names(text: str, existing: set[str], own: str = "") -> str:
    """Markdown ``text`` with each backticked name of an existing notebook made a link.

    ``existing``: stems of the notebooks beside this one; ``own``: this notebook's stem (not
    linked to itself). Fenced code blocks are left alone.
    """
    parts = re.split(r"(^```.*?^```[^\n]*$)", text, flags=re.S | re.M)
    for i in range(0, len(parts), 2):  # even parts are outside fenced code
        parts[i] = _NOTEBOOK_NAME.sub(
            lambda m: (
                f"[`{m.group('stem')}`]({m.group('stem')}.ipynb)"
                if m.group("stem") in existing and m.group("stem") != own
                else m.group(0)
            ),
            parts[i],
        )
    return "".join(parts)


def link_notebook(path: str | Path, write: bool = True) -> int:
    """Link the notebook names in ``path``'s markdown cells; returns the links added."""
    path = Path(path)
    raw = path.read_text(encoding="utf-8")
    nb = json.loads(raw)
    existing = {p.stem for p in path.parent.glob("[0-9][0-9]_*.ipynb") if ".updated" not in p.name}
    added = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        before = _source(cell)
        after = link_notebook_names(before, existing, own=path.stem)
        if after != before:
            added += after.count("](") - before.count("](")
            cell["source"] = after.splitlines(keepends=True)
    if added and write:
        path.write_text(_dumps(nb), encoding="utf-8")
    return added


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
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell.get("cell_type") == "markdown":
            words += len(source.split())
            continue
        code += sum(
            1 for line in source.splitlines() if line.strip() and not line.strip().startswith("###")
        )
        exercises += source.count(BEGIN)
        for out in cell.get("outputs", []):
            if "image/png" in out.get("data", {}):
                plots += 1
            text = (
                out.get("text") or out.get("data", {}).get("text/plain") or out.get("evalue") or ""
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


USAGE = """\
usage: python -m tools.notebook_tools sanitize NOTEBOOK.ipynb [...]
       python -m tools.notebook_tools learner FOLDER [--adopt OLD_FOLDER] [NOTEBOOK ...]
       python -m tools.notebook_tools learner-reset FOLDER (--all | NOTEBOOK ...) [--yes]
       python -m tools.notebook_tools reading-time NOTEBOOK.ipynb [...]
       python -m tools.notebook_tools links [--dry-run] NOTEBOOK.ipynb [...]
NOTEBOOK: a path, a name or a number (01); default for learner: every notebooks/NN_*.ipynb"""


def _ask(question: str) -> bool:
    """Ask on a terminal; without one (a script, CI) the answer is yes (a backup is kept)."""
    if not sys.stdin.isatty():
        return True
    return input(question).strip().lower() in ("y", "yes")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv else ""
    flags = {a for a in argv if a.startswith("--")}
    adopt = None
    if "--adopt" in argv:
        i = argv.index("--adopt")
        if i + 1 >= len(argv):
            print(USAGE, file=sys.stderr)
            return 2
        adopt = argv.pop(i + 1)
        argv.pop(i)
        flags.discard("--adopt")
    args = [a for a in argv if not a.startswith("--")]
    allowed = {
        "sanitize": set(),
        "reading-time": set(),
        "links": {"--dry-run"},
        "learner": set(),
        "learner-reset": {"--all", "--yes"},
    }
    if command not in allowed or flags - allowed[command]:
        print(USAGE, file=sys.stderr)
        return 2
    if command in ("learner", "learner-reset"):
        if not args:
            print(USAGE, file=sys.stderr)
            return 2
        folder, names = Path(args[0]), args[1:]
        if command == "learner-reset" and not names and "--all" not in flags:
            print(
                "learner-reset: name the notebooks to reset (NB=01 or "
                "NB=notebooks/01_state_dict_basics.ipynb), or reset every one with --all",
                file=sys.stderr,
            )
            return 2
    else:
        names = args
        if not names:
            print(USAGE, file=sys.stderr)
            return 2
    try:
        if command in ("learner", "learner-reset") and not names:
            paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
        else:
            paths = resolve_notebooks(names, lessons=command == "learner-reset")
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    if command == "reading-time":
        for path in paths:
            r = reading_minutes(path)
            print(
                f"{path.stem}: {r['minutes']:.0f} min ({r['words']} words, {r['code_lines']} code lines, "
                f"{r['output_lines']} output lines, {r['plots']} plots, {r['exercises']} exercises)"
            )
        return 0
    if command == "sanitize":
        for path in paths:
            sanitize_notebook(path)
        return 0
    if command == "links":
        for path in paths:
            n = link_notebook(path, write="--dry-run" not in flags)
            verb = "would link" if "--dry-run" in flags else "linked"
            print(f"{path.as_posix()}: {verb} {n} notebook name(s)")
        return 0
    try:
        if command == "learner":
            sync_learner(folder, paths, adopt=adopt)
        else:
            confirm = None if "--yes" in flags else _ask
            reset_learner(folder, paths, confirm=confirm)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
