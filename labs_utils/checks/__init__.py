"""Self-checks for the "Your turn" exercises: ``check.<name>(answer)``, ``check.hint(name)``,
``check.solution(name)``, ``check.progress()``; each returns a ``CheckResult`` (one line of text,
a coloured box in JupyterLab).

A check is one function registered with ``@exercise``. Most compare the answer with a reference on
cases (``behaves_like``); checks that judge *how* something is done use probes (``spy``,
``crash.watching``, ``crash.kill_at``, ``process_changes``). The wrong and right answers that test
the checks live in ``tests/checks/``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import pkgutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .calling import (
    NotAttempted,
    Wrong,
    as_int,
    call_answer,
    explained,
    isolated_safe_globals,
    process_changes,
    run_answer,
    run_check,
    spy,
)
from .compare import Case, behaves_like, same
from .feedback import CORRECT, NOT_ATTEMPTED, WRONG, CheckResult, Text

__all__ = [
    "check",
    "load_all",
    "exercise",
    "CheckResult",
    "Case",
    "Wrong",
    "NotAttempted",
    "REGISTRY",
    "behaves_like",
    "call_answer",
    "explained",
    "process_changes",
    "spy",
    "run_answer",
    "as_int",
    "same",
    "isolated_safe_globals",
]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"  # the instructor edition


@dataclass
class Exercise:
    name: str
    notebook: str
    fn: Callable[..., Any]
    home: str = ""
    doc: str = ""
    hints_given: int = 0
    last: CheckResult | None = None


REGISTRY: dict[str, Exercise] = {}
_history: list[str] = []  # the checks run in this kernel session, in order


def _home(module: str, lesson: str) -> str:
    """The notebook an exercise is in: its module is named after it (``nb12`` -> ``12_...``)."""
    number = module.rsplit(".", 1)[-1].removeprefix("nb")[:2]
    if lesson.startswith(number + "_"):
        return lesson
    found = sorted(NOTEBOOKS.glob(f"{number}_*.ipynb"))
    return found[0].stem if found else number


def exercise(name: str, *, notebook: str) -> Callable:
    """Register a check named ``name``; ``notebook`` is the lesson that teaches it (named in a
    hint when it is not the notebook the exercise is in). The check gets the answer and returns
    the success message, or raises ``Wrong`` with a hint (``NotAttempted`` for a placeholder)."""

    def deco(fn: Callable[..., Any]) -> Callable[..., CheckResult]:
        home = _home(fn.__module__, notebook)

        @functools.wraps(fn)
        def run(answer: Any = None, *args: Any, **kwargs: Any) -> CheckResult:
            result = run_check(fn, answer, args, kwargs)
            result.name, result.notebook, result.home = name, notebook, home
            REGISTRY[name].last = result
            _history.append(name)
            return result

        if name in REGISTRY:
            raise ValueError(f"two checks are named {name!r}; give one another name")
        REGISTRY[name] = Exercise(name, notebook, run, home, inspect.getdoc(fn) or "")
        return run

    return deco


def _solution_cell(name: str) -> str:
    """The instructor edition's answer cell: the code cell before ``check.<name>(...)``."""
    path = NOTEBOOKS / f"{REGISTRY[name].home}.ipynb"
    nb = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"cells": []}
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    for before, cell in zip(cells, cells[1:]):
        if cell.lstrip().startswith(f"check.{name}(") and "### BEGIN SOLUTION" in before:
            return before
    return ""


class _Checks:
    """``check.<name>(answer)`` for every registered check, and ``check.hint(name)``,
    ``check.solution(name)``, ``check.progress()``."""

    def __getattr__(self, name: str) -> Callable[..., CheckResult]:
        return self._exercise(name).fn

    def __dir__(self) -> list[str]:
        load_all()
        return sorted([*REGISTRY, "hint", "solution", "progress"])

    def _exercise(self, name: Any) -> Exercise:
        load_all()
        name = getattr(name, "__name__", name)
        if name not in REGISTRY:
            raise AttributeError(
                f"no check named {name!r}; known checks: {', '.join(sorted(REGISTRY))}"
            )
        return REGISTRY[name]

    def hint(self, name: str) -> Text:
        """The next hint for exercise ``name``: the notebook's own hint first, then what the
        check tests, then the hint of your last try; then it points to ``check.solution``."""
        ex = self._exercise(name)
        notebook = [
            line.split("# Hint:", 1)[1].strip()
            for line in _solution_cell(ex.name).splitlines()
            if "# Hint:" in line
        ]
        tries = "What the check tries: " + " ".join(ex.doc.replace("``", "`").split())
        last = ex.last is not None and ex.last.status == WRONG
        ladder = [
            " ".join(notebook),
            tries if ex.doc else "",
            f"Your last try: {ex.last.message}" if last else "",
        ]
        ladder = [h for h in ladder if h]
        ex.hints_given += 1
        if ex.hints_given > len(ladder):
            return Text(
                f'No more hints for {ex.name}: check.solution("{ex.name}") shows a solution.'
            )
        return Text(f"Hint {ex.hints_given}/{len(ladder)}: {ladder[ex.hints_given - 1]}")

    def solution(self, name: str) -> Text:
        """The solution of exercise ``name``, from the instructor edition in ``notebooks/``."""
        ex = self._exercise(name)
        cell = _solution_cell(ex.name)
        if not cell:
            return Text(f"No solution found for {ex.name}: it is in notebooks/{ex.home}.ipynb.")
        lines = [
            line
            for line in cell.splitlines()
            if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")
        ]
        text = Text("\n".join(lines))
        text.code = True
        return text

    def progress(self, notebook: str | None = None) -> Text:
        """The exercises of this notebook (or ``notebook``, a number or a name) and which of them
        passed their check in this kernel session."""
        load_all()
        number = str(notebook or _current_notebook() or "").split("_")[0].zfill(2)
        mine = [e for e in REGISTRY.values() if e.home.split("_")[0] == number]
        if not mine:
            return Text("No exercises found: run a check first, or name the notebook.")
        marks = {CORRECT: "done", WRONG: "not yet", NOT_ATTEMPTED: "not attempted"}
        rows = [
            f"  {marks[e.last.status] if e.last is not None else 'not run':<14}{e.name}"
            for e in mine
        ]
        done = sum(1 for e in mine if e.last is not None and e.last.status == CORRECT)
        text = Text(f"{mine[0].home}: {done} of {len(mine)} done\n" + "\n".join(rows))
        text.kind = CORRECT if done == len(mine) else NOT_ATTEMPTED
        return text


def _current_notebook() -> str:
    """The notebook this kernel runs, from Jupyter's session name, else the last check run."""
    for value in (
        os.environ.get("JPY_SESSION_NAME", ""),
        sys.modules["__main__"].__dict__.get("__session__", ""),
    ):
        stem = Path(str(value)).stem
        if stem[:2].isdigit():
            return stem
    return REGISTRY[_history[-1]].home if _history else ""


_loaded = False


def load_all() -> None:
    """Import every check module, so that REGISTRY holds every check."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("nb"):
            importlib.import_module(f"{__name__}.{mod.name}")


check = _Checks()
