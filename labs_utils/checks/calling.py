"""Calling a learner's code: exceptions become hints (with the learner's own line), a forgotten
`return` is named, placeholders count as not attempted, and whatever the code changed for the
whole process (grad mode, safe globals, default dtype, current folder) is undone and reported."""

from __future__ import annotations

import contextlib
import dis
import functools
import inspect
import linecache
import operator
import os
import re
import sys
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import torch

from .feedback import CORRECT, NOT_ATTEMPTED, WRONG, CheckResult


class Wrong(Exception):
    """Raised inside a check with the hint the learner should see.

    ``covers`` names the process-wide changes the hint already explains ("grad", "safe_globals",
    "dtype", "cwd"), so the framework does not repeat them after it."""

    def __init__(self, message: str = "", *, covers: tuple[str, ...] | set[str] = ()):
        super().__init__(message)
        self.covers = set(covers)
        self.raised = ""  # the learner's exception, when the hint reports one


class NotAttempted(Exception):
    """Raised inside a check when the answer is still a placeholder."""


@contextlib.contextmanager
def explained(pattern: str, hint: str):
    """Within, a ``Wrong`` whose text matches the regular expression ``pattern`` becomes ``hint``,
    in which ``{error}`` stands for the original text less "your function raised "."""
    try:
        yield
    except Wrong as w:
        if not re.search(pattern, str(w)):
            raise
        raise Wrong(hint.replace("{error}", str(w).removeprefix("your function raised "))) from None


# The learner edition replaces a solution with ``pass  # Your turn: ...`` (tools/notebook_tools).
_PLACEHOLDER_MARK = "# Your turn:"


def is_placeholder_function(fn: Any) -> bool:
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


_side_effects: list[tuple[str, str]] = []  # (kind, hint)


def _safe_globals_now() -> set:
    return set(torch.serialization.get_safe_globals())


def _set_safe_globals(entries: set) -> None:
    torch.serialization.clear_safe_globals()
    if entries:
        torch.serialization.add_safe_globals(list(entries))


def entry_name(entry: Any) -> str:
    if isinstance(entry, tuple):
        return str(entry[1]) if len(entry) > 1 else repr(entry)
    return f"{getattr(entry, '__module__', '?')}.{getattr(entry, '__qualname__', repr(entry))}"


def torch_own(entry: Any) -> bool:
    obj = entry[0] if isinstance(entry, tuple) else entry
    return str(getattr(obj, "__module__", "")).split(".")[0] == "torch"


def _process_state() -> dict[str, Any]:
    grad, dtype = torch.is_grad_enabled(), torch.get_default_dtype()
    return {"grad": grad, "safe_globals": _safe_globals_now(), "dtype": dtype, "cwd": os.getcwd()}


def _restore_process_state(state: dict[str, Any]) -> None:
    torch.set_grad_enabled(state["grad"])
    if _safe_globals_now() != state["safe_globals"]:
        _set_safe_globals(state["safe_globals"])
    torch.set_default_dtype(state["dtype"])
    if os.getcwd() != state["cwd"]:
        os.chdir(state["cwd"])


_CHANGED = {
    "grad off": "your function turned autograd off for the whole process and left it off (torch.set_grad_enabled(False)?): use `with torch.no_grad():` or `with torch.inference_mode():` around the forward pass, so that grad mode is back on when the function returns",
    "grad on": "your function switched grad mode on for the whole process and left it on; change it only inside a `with` block",
    "added": "your function allowed {} for every later torch.load in this process (torch.serialization.add_safe_globals is process-wide); allow it for one load only, with `with torch.serialization.safe_globals([...]):` around that torch.load",
    "removed": "your function removed {} from the process-wide safe-globals list (clear_safe_globals, or a safe_globals block over names registered elsewhere); leave entries you did not add alone",
    "dtype": "your function changed the default dtype to {} for the whole process; pass dtype= where you need it instead of torch.set_default_dtype",
    "cwd": "your function changed the current folder (os.chdir) and did not change it back; build paths from the folder you were given instead",
}


def _describe_changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str]]:
    """What the learner's code changed for the whole process, each as (kind, hint)."""
    out = []
    if after["grad"] != before["grad"]:
        out.append(("grad", _CHANGED["grad off" if before["grad"] else "grad on"]))
    # PyTorch registers its own entries when a module is first imported (torch._dynamo adds
    # DTensor and DeviceMesh): only what the learner's code added counts.
    added = {e for e in after["safe_globals"] - before["safe_globals"] if not torch_own(e)}
    removed = before["safe_globals"] - after["safe_globals"]
    for what, entries in (("added", added), ("removed", removed)):
        if entries:
            names = ", ".join(sorted(entry_name(e) for e in entries))
            out.append(("safe_globals", _CHANGED[what].format(names)))
    if after["dtype"] != before["dtype"]:
        out.append(("dtype", _CHANGED["dtype"].format(after["dtype"])))
    if after["cwd"] != before["cwd"]:
        out.append(("cwd", _CHANGED["cwd"]))
    return out


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
    """Call a learner's function that must return something; return what it returned. A
    placeholder (or ``NotImplementedError``) counts as not attempted; any exception (even a
    ``BaseException`` such as DCP's ``CheckpointException``, not ``KeyboardInterrupt``) becomes a
    ``Wrong`` hint naming the learner's line; ``None`` gets "did you forget `return`?"; process-wide
    changes are undone and reported. For a function whose effect is what counts: ``run_answer``."""
    out = run_answer(fn, *args, **kwargs)
    if out is None:
        raise Wrong(
            "your function ran but returned None: did you forget the `return` line at its end?"
        )
    return out


def run_answer(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Like ``call_answer``, for a function that may return None (its effect is what counts)."""
    attempted(fn)
    before = _process_state()
    shown = [summary(a, 1) for a in args] + [f"{k}={summary(v, 1)}" for k, v in kwargs.items()]
    call = f"{getattr(fn, '__name__', 'your function')}({', '.join(shown)})"
    try:
        out = _own_arguments_only(fn)(*args, **kwargs)
        _last_call[:] = [f"{call} returned {summary(out)}"]
    except NotImplementedError:
        raise NotAttempted from None
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # the learner's code failed: say how, as a hint
        _last_call[:] = [f"{call} raised {type(e).__name__}"]
        _where[:] = [_learner_line(e.__traceback__)]
        wrong = Wrong(
            f"your function raised {type(e).__name__}: {str(e).strip() or '(no message)'}"
        )
        wrong.raised = type(e).__name__  # what a known mistake that raises is compared with
        raise wrong from None
    finally:
        changes = _describe_changes(before, _process_state())
        if changes:
            _restore_process_state(before)
            _side_effects.extend(c for c in changes if c not in _side_effects)
    return out


def attempted(fn: Any) -> None:
    """Raise ``Wrong`` unless ``fn`` is a function, ``NotAttempted`` if it is a placeholder."""
    if not callable(fn):
        raise Wrong(
            f"expected a function, got {type(fn).__name__}; define it with def and pass its name"
        )
    if is_placeholder_function(fn):
        raise NotAttempted


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


def summary(obj: Any, depth: int = 0) -> str:
    """A short, machine-independent description of a value, for the "tried:" line of a hint."""
    if isinstance(obj, torch.Tensor):
        return f"tensor{tuple(obj.shape)} {str(obj.dtype).removeprefix('torch.')}"
    if type(obj).__name__ == "ndarray":
        return f"array{tuple(obj.shape)} {obj.dtype}"
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
            return f"{type(obj).__name__} [{', '.join(summary(i, 1) for i in items)}]"
        return f"{type(obj).__name__} of {len(items)}"
    if callable(obj):
        return f"function {getattr(obj, '__name__', type(obj).__name__)}"
    return f"a {type(obj).__name__}"


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
            f"{what} should be a whole number (an int), got {type(value).__name__} {value!r}{hint}: wrap it in int(...) or use integer arithmetic (//)"
        )
    raise Wrong(f"{what} should be a whole number (an int), got {type(value).__name__}")


@contextlib.contextmanager
def isolated_safe_globals():
    """Inside, the process-wide safe-globals list holds only PyTorch's own entries, so an
    allowlist answer is judged on its own (entries a learner added earlier with
    ``add_safe_globals`` do not help it); on exit the list is exactly as it was."""
    saved = _safe_globals_now()
    _set_safe_globals({e for e in saved if torch_own(e)})
    try:
        yield
    finally:
        _set_safe_globals(saved)


@contextlib.contextmanager
def spy(owner: Any, name: str, note: Callable[..., Any] | None = None):
    """Record the calls a learner's code makes to ``owner.name`` while still running the real
    function (nothing is faked). Yields a list of ``(args, kwargs, result)`` tuples; with ``note``,
    ``note(*args, **kwargs)`` taken just before the call stands in for the result."""
    real = getattr(owner, name)
    calls: list[tuple[tuple, dict, Any]] = []

    @functools.wraps(real)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        noted = note(*args, **kwargs) if note is not None else None
        result = real(*args, **kwargs)
        calls.append((args, kwargs, result if note is None else noted))
        return result

    with mock.patch.object(owner, name, wrapper):
        yield calls


def run_check(fn: Callable[..., Any], answer: Any, args: tuple, kwargs: dict) -> CheckResult:
    """Run check ``fn`` on ``answer``, the learner's process left as it was (random generators,
    grad mode, safe globals, default dtype, current folder): its verdict, its hint (with what the
    answer changed for the whole process), the learner's last call and line."""
    from ..toolkit import capture_rng_state, restore_rng_state

    if answer is None or answer is Ellipsis:  # the answer cell is still a placeholder
        return CheckResult("", NOT_ATTEMPTED, "")
    _side_effects.clear()
    _last_call.clear()
    _where.clear()
    covered: set[str] = set()
    rng, state = capture_rng_state(), _process_state()  # a check seeds and draws freely
    try:
        msg, status = fn(answer, *args, **kwargs), CORRECT
    except NotAttempted:
        return CheckResult("", NOT_ATTEMPTED, "")
    except Wrong as w:
        status, msg, covered = WRONG, str(w), w.covers
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # never let a check crash the learner's notebook
        text = str(e).strip() or "(no message)"
        text = text if len(text) <= 600 else text[:600] + " ..."
        status, msg = WRONG, f"the check could not use your answer ({type(e).__name__}: {text})"
    finally:
        _restore_process_state(state)
        restore_rng_state(rng)
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
