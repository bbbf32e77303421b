"""Self-checks for the "Your turn" exercises.

In a notebook::

    from labs_utils.checks import check
    check.keys_of_simple_model(my_answer)
    check.hint("keys_of_simple_model")      # the next hint, one more on each call
    check.solution("keys_of_simple_model")  # the instructor edition's solution
    check.progress()                        # the exercises of this notebook done so far

Every check returns a ``CheckResult``: one line of plain text (``Not attempted yet: ...``,
``Not yet: <a specific hint>``, ``Correct! ...``), and a coloured box in JupyterLab.

A check is one function registered with ``@exercise``. Most compare the learner's answer with a
reference solution on a few cases (``behaves_like``): the answer is right only if it does what the
reference does on every case, and the hint names the first known mistake that behaves like it, or
else the first case where the two differ. Checks that judge *how* something is done use the
probes in ``probes.py`` (which loads ran, with which arguments) and ``crash.py`` (a real SIGKILL).
The wrong and right answers that test the checks live in ``tests/checks/``.
"""

from __future__ import annotations

import contextlib
import dis
import functools
import html
import importlib
import inspect
import json
import math
import operator
import os
import pkgutil
import sys
import traceback
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

__all__ = [
    "check",
    "exercise",
    "CheckResult",
    "Case",
    "Wrong",
    "NotAttempted",
    "REGISTRY",
    "behaves_like",
    "call_answer",
    "process_changes",
    "spy",
    "run_answer",
    "as_int",
    "same",
    "isolated_safe_globals",
    "learner_state",
]

CORRECT, WRONG, NOT_ATTEMPTED = "correct", "wrong", "not attempted"
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"  # the instructor edition


class Wrong(Exception):
    """Raised inside a check with the hint the learner should see.

    ``covers`` names the process-wide changes the hint already explains ("grad", "safe_globals",
    "dtype", "cwd"), so the framework does not repeat them after it."""

    def __init__(self, message: str = "", *, covers: tuple[str, ...] | set[str] = ()):
        super().__init__(message)
        self.covers = set(covers)


class NotAttempted(Exception):
    """Raised inside a check when the answer is still a placeholder."""


# --- what a learner sees ---------------------------------------------------------------------

_STYLE = {  # border and a translucent background: readable on light and dark themes alike
    CORRECT: ("#2e7d32", "rgba(46, 125, 50, 0.12)"),
    WRONG: ("#d84315", "rgba(230, 81, 0, 0.12)"),
    NOT_ATTEMPTED: ("#808080", "rgba(128, 128, 128, 0.12)"),
}
_CLASS = {CORRECT: "correct", WRONG: "wrong", NOT_ATTEMPTED: "unattempted"}
_NOT_ATTEMPTED_TEXT = (
    "replace the placeholder in the cell above with your answer, then run this check again."
)


def _box(status: str, body: str) -> str:
    border, background = _STYLE[status]
    return (
        f'<div class="labs-check labs-check--{_CLASS[status]}" style="border-left: 4px solid '
        f"{border}; background: {background}; padding: 6px 10px; margin: 2px 0; "
        f'border-radius: 2px; white-space: pre-wrap;">{body}</div>'
    )


@dataclass
class CheckResult:
    name: str
    status: str
    message: str
    notebook: str = ""  # the lesson that teaches it, named in a hint only if it is another one
    tried: str = ""  # the last call of the learner's code: what went in, what came out
    where: str = ""  # the learner's own line, when their code raised
    home: str = ""  # the notebook the exercise is in

    def __bool__(self) -> bool:
        return self.status == CORRECT

    def _see(self) -> str:
        other = self.notebook and self.notebook.split("_")[0] != self.home.split("_")[0]
        return f"{self.notebook}.ipynb" if other else ""

    def __repr__(self) -> str:
        if self.status == CORRECT:
            return f"Correct! {self.message}".rstrip()
        if self.status == NOT_ATTEMPTED:
            return f"Not attempted yet: {_NOT_ATTEMPTED_TEXT}"
        see = f" (see {self._see()})" if self._see() else ""
        where = f"\n  at: {self.where}" if self.where else ""
        tried = f"\n  tried: {self.tried}" if self.tried else ""
        return f"Not yet: {self.message}{see}{where}{tried}"

    __str__ = __repr__

    def _repr_html_(self) -> str:
        e = html.escape
        if self.status == CORRECT:
            return _box(CORRECT, f"<b>Correct!</b> {e(self.message)}")
        if self.status == NOT_ATTEMPTED:
            return _box(NOT_ATTEMPTED, f"<b>Not attempted yet:</b> {e(_NOT_ATTEMPTED_TEXT)}")
        see = self._see()
        link = f' (see <a href="{e(see)}">{e(see)}</a>)' if see else ""
        body = f"<b>Not yet:</b> {e(self.message)}{link}"
        if self.where:
            body += f"<br><small>at: <code>{e(self.where)}</code></small>"
        if self.tried:
            body += f"<br><small>tried: <code>{e(self.tried)}</code></small>"
        body += f'<br><small>stuck? <code>check.hint("{e(self.name)}")</code></small>'
        return _box(WRONG, body)


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


# --- placeholders ------------------------------------------------------------------------------


def _is_placeholder(answer: Any) -> bool:
    return answer is None or answer is Ellipsis


# The learner edition replaces a solution with ``pass  # Your turn: ...`` (tools/notebook_tools).
_PLACEHOLDER_MARK = "# Your turn:"


def _is_placeholder_function(fn: Any) -> bool:
    """True for a function that has no code of its own yet: a body of ``pass``, ``...`` or a
    docstring (compiled to ``return None`` alone), or the learner edition's placeholder line."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return False
    ops = [
        (i.opname, i.argval)
        for i in dis.get_instructions(code)
        if i.opname not in {"RESUME", "NOP", "CACHE"}
    ]
    if ops in ([("LOAD_CONST", None), ("RETURN_VALUE", None)], [("RETURN_CONST", None)]):
        return True
    try:
        return _PLACEHOLDER_MARK in inspect.getsource(fn)
    except (OSError, TypeError):
        return False


# --- what a learner's code may not change for the whole process --------------------------------

_side_effects: list[tuple[str, str]] = []  # (kind, hint)


def _safe_globals_now() -> set:
    import torch

    return set(torch.serialization.get_safe_globals())


def _set_safe_globals(entries: set) -> None:
    import torch

    torch.serialization.clear_safe_globals()
    if entries:
        torch.serialization.add_safe_globals(list(entries))


def _entry_name(entry: Any) -> str:
    if isinstance(entry, tuple):
        return str(entry[1]) if len(entry) > 1 else repr(entry)
    return f"{getattr(entry, '__module__', '?')}.{getattr(entry, '__qualname__', repr(entry))}"


def _torch_own(entry: Any) -> bool:
    obj = entry[0] if isinstance(entry, tuple) else entry
    return str(getattr(obj, "__module__", "")).split(".")[0] == "torch"


def _process_state() -> dict[str, Any]:
    import torch

    return {
        "grad": torch.is_grad_enabled(),
        "safe_globals": _safe_globals_now(),
        "dtype": torch.get_default_dtype(),
        "cwd": os.getcwd(),
    }


def _restore_process_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_grad_enabled(state["grad"])
    if _safe_globals_now() != state["safe_globals"]:
        _set_safe_globals(state["safe_globals"])
    torch.set_default_dtype(state["dtype"])
    if os.getcwd() != state["cwd"]:
        os.chdir(state["cwd"])


_CHANGED = {
    "grad off": "your function turned autograd off for the whole process and left it off "
    "(torch.set_grad_enabled(False)?): use `with torch.no_grad():` or `with "
    "torch.inference_mode():` around the forward pass, so that grad mode is back on when the "
    "function returns",
    "grad on": "your function switched grad mode on for the whole process and left it on; "
    "change it only inside a `with` block",
    "added": "your function allowed {} for every later torch.load in this process "
    "(torch.serialization.add_safe_globals is process-wide); allow it for one load only, with "
    "`with torch.serialization.safe_globals([...]):` around that torch.load",
    "removed": "your function removed {} from the process-wide safe-globals list "
    "(clear_safe_globals, or a safe_globals block over names registered elsewhere); leave "
    "entries you did not add alone",
    "dtype": "your function changed the default dtype to {} for the whole process; pass dtype= "
    "where you need it instead of torch.set_default_dtype",
    "cwd": "your function changed the current folder (os.chdir) and did not change it back; "
    "build paths from the folder you were given instead",
}


def _describe_changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str]]:
    """What the learner's code changed for the whole process, each as (kind, hint)."""
    out = []
    if after["grad"] != before["grad"]:
        out.append(("grad", _CHANGED["grad off" if before["grad"] else "grad on"]))
    # PyTorch registers its own entries when a module is first imported (torch._dynamo adds
    # DTensor and DeviceMesh): only what the learner's code added counts.
    added = {e for e in after["safe_globals"] - before["safe_globals"] if not _torch_own(e)}
    for what, entries in (
        ("added", added),
        ("removed", before["safe_globals"] - after["safe_globals"]),
    ):
        if entries:
            names = ", ".join(sorted(_entry_name(e) for e in entries))
            out.append(("safe_globals", _CHANGED[what].format(names)))
    if after["dtype"] != before["dtype"]:
        out.append(("dtype", _CHANGED["dtype"].format(after["dtype"])))
    if after["cwd"] != before["cwd"]:
        out.append(("cwd", _CHANGED["cwd"]))
    return out


# --- calling the learner's code ----------------------------------------------------------------

_last_call: list[str] = []  # one line: the learner's last call in this check and its outcome
_where: list[str] = []  # the learner's own line where their code raised
_PACKAGE = str(Path(__file__).resolve().parents[1])
_LIBRARY = tuple({sys.prefix, sys.base_prefix, sys.exec_prefix})


def _learner_line(tb: Any) -> str:
    """``In [12], line 4: return sd[key]``: the deepest frame of the learner's own code (a
    notebook cell or a file outside Python, its libraries and this package)."""
    found = ""
    for frame, lineno in traceback.walk_tb(tb):
        name = frame.f_code.co_filename
        if name.startswith(("<frozen", _PACKAGE, *_LIBRARY)) or "site-packages" in name:
            continue
        import linecache

        source = linecache.getline(name, lineno).strip()
        cell = ""
        ip = sys.modules.get("IPython")
        shell = ip.get_ipython() if ip is not None else None
        number = getattr(getattr(shell, "compile", None), "_filename_map", {}).get(name)
        if number is not None:
            cell = f"In [{number}], "
        elif not name.startswith("<"):
            cell = f"{Path(name).name}, "
        found = f"{cell}line {lineno}" + (f": {source}" if source else "")
    return found


def call_answer(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a learner's function that must return something, and return what it returned.

    * A function with no code yet (``pass``, ``...``, the learner edition's placeholder) or one
      that raises ``NotImplementedError`` counts as not attempted.
    * Any exception from the learner's code, including those that derive from ``BaseException``
      (``torch.distributed.checkpoint``'s ``CheckpointException`` does), becomes a ``Wrong`` hint
      that names it and the learner's own line; only ``KeyboardInterrupt`` goes through.
    * Code that ran but returned ``None`` gets "did you forget `return`?".
    * Whatever the function changed for the whole process (grad mode, the safe-globals list, the
      default dtype, the current folder) is put back at once and reported by the check.

    For a function whose task returns nothing (a save function, say), use ``run_answer``.
    """
    out = run_answer(fn, *args, **kwargs)
    if out is None:
        raise Wrong(
            "your function ran but returned None: did you forget the `return` line at its end?"
        )
    return out


def run_answer(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Like ``call_answer``, for a function that may return None (its effect is what counts)."""
    if not callable(fn):
        raise Wrong(
            f"expected a function, got {type(fn).__name__}; define it with def and pass its name"
        )
    if _is_placeholder_function(fn):
        raise NotAttempted
    before = _process_state()
    call = f"{getattr(fn, '__name__', 'your function')}({_summary_args(args, kwargs)})"
    try:
        out = _own_arguments_only(fn)(*args, **kwargs)
        _last_call[:] = [f"{call} returned {_summary(out)}"]
    except NotImplementedError:
        raise NotAttempted from None
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # the learner's code failed: say how, as a hint
        _last_call[:] = [f"{call} raised {type(e).__name__}"]
        _where[:] = [_learner_line(e.__traceback__)]
        raise Wrong(
            f"your function raised {type(e).__name__}: {str(e).strip() or '(no message)'}"
        ) from None
    finally:
        changes = _describe_changes(before, _process_state())
        if changes:
            _restore_process_state(before)
            _side_effects.extend(c for c in changes if c not in _side_effects)
    return out


def process_changes() -> list[tuple[str, str]]:
    """What the learner's code changed for the whole process so far in this check (undone at
    once by the framework), as ``(kind, hint)``: "grad", "safe_globals", "dtype" or "cwd"."""
    return list(_side_effects)


def _own_arguments_only(fn: Any) -> Any:
    """``fn`` run with globals that lack the names of its own parameters: in a notebook, a global
    ``scaler`` must not make ``"scaler" in globals()`` true inside ``f(model, scaler)``; the answer
    is judged on what it was given."""
    if not isinstance(fn, types.FunctionType):
        return fn
    code = fn.__code__
    params = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    hidden = {p for p in params if p in fn.__globals__}
    if not hidden:
        return fn
    own = {k: v for k, v in fn.__globals__.items() if k not in hidden}
    copy = types.FunctionType(code, own, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__, copy.__qualname__ = fn.__kwdefaults__, fn.__qualname__
    return copy


def _summary(obj: Any, depth: int = 0) -> str:
    """A short, machine-independent description of a value, for the "tried:" line of a hint."""
    import torch

    if isinstance(obj, torch.Tensor):
        return f"tensor{tuple(obj.shape)} {str(obj.dtype).removeprefix('torch.')}"
    if isinstance(obj, torch.nn.Module):
        return f"a {type(obj).__name__} model"
    if isinstance(obj, os.PathLike):
        return f"a path ending in {os.fspath(obj).replace(os.sep, '/').split('/')[-1]!r}"
    if isinstance(obj, (bool, int, float)) or obj is None:
        return repr(obj)
    if isinstance(obj, str):
        return repr(obj if len(obj) <= 40 else obj[:37] + "...")
    if isinstance(obj, dict) or (hasattr(obj, "keys") and hasattr(obj, "items")):
        keys = list(obj.keys())
        shown = ", ".join(repr(k) for k in keys[:3]) + (", ..." if len(keys) > 3 else "")
        return f"{type(obj).__name__} with {len(keys)} key(s) [{shown}]"
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = list(obj)
        simple = all(isinstance(i, (str, int, float)) for i in items)
        if len(items) <= 3 and (depth == 0 or simple):
            return f"{type(obj).__name__} [{', '.join(_summary(i, 1) for i in items)}]"
        return f"{type(obj).__name__} of {len(items)}"
    if callable(obj):
        return f"function {getattr(obj, '__name__', type(obj).__name__)}"
    return f"a {type(obj).__name__}"


def _summary_args(args: tuple, kwargs: dict) -> str:
    parts = [_summary(a, 1) for a in args] + [f"{k}={_summary(v, 1)}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _short(e: BaseException, limit: int = 600) -> str:
    text = str(e).strip() or "(no message)"
    return text if len(text) <= limit else text[:limit] + " ..."


def as_int(value: Any, what: str = "the answer") -> int:
    """One rule for every check that asks for a whole number: ``int`` and NumPy integers
    (anything ``operator.index`` accepts, one-element integer tensors too) pass; ``bool`` and
    ``float`` get a hint."""
    if isinstance(value, bool):
        raise Wrong(f"{what} should be a whole number, got the bool {value}")
    with contextlib.suppress(TypeError):
        return operator.index(value)
    if isinstance(value, float) or type(value).__module__ == "numpy":
        whole = isinstance(value, float) and float(value).is_integer()
        hint = f" ({int(value)} as int)" if whole else ""
        raise Wrong(
            f"{what} should be a whole number (an int), got {type(value).__name__} {value!r}"
            f"{hint}: wrap it in int(...) or use integer arithmetic (//)"
        )
    raise Wrong(f"{what} should be a whole number (an int), got {type(value).__name__}")


# --- comparing with a reference ----------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal as a learner's result counts: tensors by dtype, shape and values; mappings by keys
    (in any order) and values; sequences item by item (a ``torch.Size`` equals a tuple);
    floats within 1e-6; models by their state_dict, ``requires_grad`` flags and mode."""
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.device == b.device
            and torch.equal(a, b)
        )
    if isinstance(a, torch.nn.Module) or isinstance(b, torch.nn.Module):
        if not (isinstance(a, torch.nn.Module) and isinstance(b, torch.nn.Module)):
            return False
        flags = [(n, p.requires_grad) for n, p in a.named_parameters()]
        return (
            a.training == b.training
            and flags == [(n, p.requires_grad) for n, p in b.named_parameters()]
            and same(a.state_dict(), b.state_dict())
        )
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return (
            isinstance(a, Mapping)
            and isinstance(b, Mapping)
            and set(a) == set(b)
            and all(same(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return (
            isinstance(a, (list, tuple))
            and isinstance(b, (list, tuple))
            and len(a) == len(b)
            and all(same(x, y) for x, y in zip(a, b))
        )
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
        except TypeError:
            return False
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    try:
        return bool(a == b)
    except Exception:
        return False


@dataclass
class Case:
    """One input to try: ``make()`` builds fresh arguments each time; ``label`` says what is
    special about it ("keys like `model.layer.weight`"); ``look(out, args)`` reduces what a call
    returned and left in its arguments to what is compared (default: the return value and the
    arguments after the call)."""

    label: str
    make: Callable[[], tuple]
    look: Callable[[Any, tuple], Any] | None = None


@dataclass
class _Outcome:
    value: Any = None
    raised: str = ""
    hint: str = ""  # for the learner's own run: the framework's hint when it raised

    def matches(self, other: _Outcome) -> bool:
        if self.raised or other.raised:
            return self.raised == other.raised
        return same(self.value, other.value)

    def say(self) -> str:
        return f"raised {self.raised}" if self.raised else _show(self.value)


def _show(value: Any) -> str:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return repr(value)
    if isinstance(value, Mapping) and len(value) <= 6:
        return "{" + ", ".join(f"{k!r}: {_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)) and len(value) <= 6:
        inner = ", ".join(_show(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    return _summary(value)


def _outcome(fn: Any, case: Case, learner: bool = False) -> _Outcome:
    args = case.make()
    try:
        out = run_answer(fn, *args) if learner else fn(*args)
    except (NotAttempted, KeyboardInterrupt):
        raise
    except Wrong as w:
        return _Outcome(raised=w.__class__.__name__, hint=str(w))
    except Exception as e:
        return _Outcome(raised=type(e).__name__)
    return _Outcome(case.look(out, args) if case.look else (out, args))


def behaves_like(
    answer: Any,
    reference: Callable[..., Any],
    cases: Sequence[Case],
    mistakes: Sequence[tuple[Callable[..., Any], str]] = (),
) -> None:
    """Raise ``Wrong`` unless ``answer`` does what ``reference`` does on every case. The hint is
    that of the first known mistake (a small wrong function) that behaves like the answer on
    every case, or else it names the first case where answer and reference differ."""
    got = [_outcome(answer, case, learner=True) for case in cases]
    for case, have in zip(cases, got):
        want = _outcome(reference, case)
        if have.matches(want):
            continue
        for mistake, hint in mistakes:
            if all(_outcome(mistake, c).matches(h) for c, h in zip(cases, got)):
                raise Wrong(hint)
        if have.hint:
            raise Wrong(have.hint)
        raise Wrong(f"for {case.label} you {_difference(have, want, case)}")


def _difference(have: _Outcome, want: _Outcome, case: Case) -> str:
    if have.raised or want.raised:
        return f"{have.say()}; expected {want.say()}"
    if case.look is not None:
        return f"gave {have.say()}; expected {want.say()}"
    (out, args), (expected, before) = have.value, want.value
    if not same(out, expected):
        return f"returned {_show(out)}; expected {_show(expected)}"
    return f"left your input as {_show(args)}; expected it unchanged, {_show(before)}"


# --- keeping the learner's process as it was -------------------------------------------------


@contextlib.contextmanager
def isolated_safe_globals():
    """Inside, the process-wide safe-globals list holds only PyTorch's own entries, so an
    allowlist answer is judged on its own (entries a learner added earlier with
    ``add_safe_globals`` do not help it); on exit the list is exactly as it was."""
    saved = _safe_globals_now()
    _set_safe_globals({e for e in saved if _torch_own(e)})
    try:
        yield
    finally:
        _set_safe_globals(saved)


@contextlib.contextmanager
def learner_state():
    """Run a block and leave the learner's process as it was: random generators, grad mode, the
    safe-globals list, the default dtype, the current folder."""
    from ..toolkit import capture_rng_state, restore_rng_state

    rng = capture_rng_state()
    state = _process_state()
    try:
        yield
    finally:
        _restore_process_state(state)
        restore_rng_state(rng)


@contextlib.contextmanager
def spy(owner: Any, name: str):
    """Record the calls a learner's code makes to ``owner.name`` while still running the real
    function (nothing is faked). Yields a list of ``(args, kwargs, result)`` tuples."""
    real = getattr(owner, name)
    calls: list[tuple[tuple, dict, Any]] = []

    @functools.wraps(real)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        calls.append((args, kwargs, result))
        return result

    with mock.patch.object(owner, name, wrapper):
        yield calls


# --- registering and running checks ------------------------------------------------------------


def _home(module: str, lesson: str) -> str:
    """The notebook an exercise is in: its module is named after it (``nb12`` -> ``12_...``)."""
    number = module.rsplit(".", 1)[-1].removeprefix("nb")[:2]
    if lesson.startswith(number + "_"):
        return lesson
    found = sorted(NOTEBOOKS.glob(f"{number}_*.ipynb"))
    return found[0].stem if found else number


def exercise(name: str, *, notebook: str, **_ignored: Any) -> Callable:
    """Register a check named ``name``; ``notebook`` is the lesson that teaches it (named in a
    hint when it is not the notebook the exercise is in). The check gets the answer and returns
    the success message, or raises ``Wrong`` with a hint (``NotAttempted`` for a placeholder)."""

    def deco(fn: Callable[..., Any]) -> Callable[..., CheckResult]:
        home = _home(fn.__module__, notebook)

        @functools.wraps(fn)
        def run(answer: Any = None, *args: Any, **kwargs: Any) -> CheckResult:
            result = _run(fn, answer, args, kwargs)
            result.name, result.notebook, result.home = name, notebook, home
            REGISTRY[name].last = result
            _history.append(name)
            return result

        if name in REGISTRY:
            raise ValueError(f"two checks are named {name!r}; give one another name")
        REGISTRY[name] = Exercise(name, notebook, run, home, inspect.getdoc(fn) or "")
        return run

    return deco


def _run(fn: Callable[..., Any], answer: Any, args: tuple, kwargs: dict) -> CheckResult:
    if _is_placeholder(answer):
        return CheckResult("", NOT_ATTEMPTED, "")
    _side_effects.clear()
    _last_call.clear()
    _where.clear()
    covered: set[str] = set()
    # a check seeds and draws freely; the learner's process stays as it was
    with learner_state():
        try:
            msg, status = fn(answer, *args, **kwargs), CORRECT
        except NotAttempted:
            return CheckResult("", NOT_ATTEMPTED, "")
        except Wrong as w:
            status, msg, covered = WRONG, str(w), w.covers
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # never let a check crash the learner's notebook
            status, msg = (
                WRONG,
                f"the check could not use your answer ({type(e).__name__}: {_short(e)})",
            )
    # an answer that worked only by changing the process for everyone after it is wrong
    effects = [hint for kind, hint in _side_effects if kind not in covered]
    _side_effects.clear()
    if effects:
        extra = "; also, ".join(effects)
        msg = extra if status == CORRECT else f"{msg}; also, {extra}"
        status = WRONG
    tried = _last_call[0] if status == WRONG and _last_call else ""
    where = _where[0] if status == WRONG and _where else ""
    _last_call.clear()
    _where.clear()
    return CheckResult("", status, msg or "", tried=tried, where=where)


class _Text(str):
    """A string that a notebook shows as it is (and in a box), not as a quoted repr."""

    kind, code = NOT_ATTEMPTED, False

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        text = html.escape(str(self))
        return _box(self.kind, f'<pre style="margin: 0;">{text}</pre>' if self.code else text)


def _cells(home: str) -> list[str]:
    path = NOTEBOOKS / f"{home}.ipynb"
    if not path.exists():
        return []
    nb = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def _solution_cell(name: str) -> str:
    """The instructor edition's answer cell: the code cell before ``check.<name>(...)``."""
    cells = _cells(REGISTRY[name].home)
    for before, cell in zip(cells, cells[1:]):
        if cell.lstrip().startswith(f"check.{name}(") and "### BEGIN SOLUTION" in before:
            return before
    return ""


class _Checks:
    """``check.<name>(answer)`` for every registered check, and ``check.hint(name)``,
    ``check.solution(name)``, ``check.progress()``."""

    def __getattr__(self, name: str) -> Callable[..., CheckResult]:
        _load_all()
        try:
            return REGISTRY[name].fn
        except KeyError:
            raise AttributeError(
                f"no check named {name!r}; known checks: {', '.join(sorted(REGISTRY))}"
            ) from None

    def __dir__(self) -> list[str]:
        _load_all()
        return sorted([*REGISTRY, "hint", "solution", "progress"])

    def _exercise(self, name: Any) -> Exercise:
        _load_all()
        name = getattr(name, "__name__", name)
        if name not in REGISTRY:
            raise AttributeError(
                f"no check named {name!r}; known checks: {', '.join(sorted(REGISTRY))}"
            )
        return REGISTRY[name]

    def hint(self, name: str) -> _Text:
        """The next hint for exercise ``name``: the notebook's own hint first, then what the
        check tests, then the hint of your last try; then it points to ``check.solution``."""
        ex = self._exercise(name)
        solution = _solution_cell(ex.name)
        ladder = [
            " ".join(
                line.split("# Hint:", 1)[1].strip()
                for line in solution.splitlines()
                if "# Hint:" in line
            ),
            "What the check tries: " + " ".join(ex.doc.split()) if ex.doc else "",
            f"Your last try: {ex.last.message}"
            if ex.last is not None and ex.last.status == WRONG
            else "",
        ]
        ladder = [h for h in ladder if h]
        ex.hints_given += 1
        if ex.hints_given > len(ladder):
            return _Text(
                f'No more hints for {ex.name}: check.solution("{ex.name}") shows a solution.'
            )
        return _Text(f"Hint {ex.hints_given}/{len(ladder)}: {ladder[ex.hints_given - 1]}")

    def solution(self, name: str) -> _Text:
        """The solution of exercise ``name``, from the instructor edition in ``notebooks/``."""
        ex = self._exercise(name)
        cell = _solution_cell(ex.name)
        if not cell:
            return _Text(f"No solution found for {ex.name}: it is in notebooks/{ex.home}.ipynb.")
        lines = [
            line
            for line in cell.splitlines()
            if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")
        ]
        text = _Text("\n".join(lines))
        text.code = True
        return text

    def progress(self, notebook: str | None = None) -> _Text:
        """The exercises of this notebook (or ``notebook``, a number or a name) and which of them
        passed their check in this kernel session."""
        _load_all()
        number = str(notebook or _current_notebook() or "").split("_")[0].zfill(2)
        mine = [e for e in REGISTRY.values() if e.home.split("_")[0] == number]
        if not mine:
            return _Text("No exercises found: run a check first, or name the notebook.")
        marks = {CORRECT: "done", WRONG: "not yet", NOT_ATTEMPTED: "not attempted"}
        rows = [
            f"  {marks[e.last.status] if e.last is not None else 'not run':<14}{e.name}"
            for e in mine
        ]
        done = sum(1 for e in mine if e.last is not None and e.last.status == CORRECT)
        text = _Text(f"{mine[0].home}: {done} of {len(mine)} done\n" + "\n".join(rows))
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


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in pkgutil.iter_modules(__path__):
        if mod.name.startswith("nb"):
            importlib.import_module(f"{__name__}.{mod.name}")


check = _Checks()
