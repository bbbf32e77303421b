"""Self-checks for the "Your turn" exercises.

In a notebook::

    from labs_utils.checks import check
    check.keys_of_simple_model(my_answer)

Every check returns a ``CheckResult`` that renders as one line:

* ``Not attempted yet: ...`` when the answer is still the placeholder (``...`` or ``None``, or a
  function with no code yet). It never raises, so a learner can run a whole notebook.
* ``Not yet: <a specific hint> (revisit notebooks/NN_topic.ipynb)`` for a wrong answer.
* ``Correct! ...`` otherwise.

Checks live in one module per notebook (``nb01.py``, ``nb02.py``, ...), registered with
``@exercise``. Each declares wrong answers with the hint they must get, which the tests use.
"""

from __future__ import annotations

import contextlib
import dis
import functools
import importlib
import inspect
import operator
import os
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

__all__ = [
    "check",
    "exercise",
    "CheckResult",
    "Wrong",
    "NotAttempted",
    "REGISTRY",
    "call_answer",
    "spy",
    "run_answer",
    "as_int",
    "isolated_safe_globals",
    "learner_state",
]

CORRECT, WRONG, NOT_ATTEMPTED = "correct", "wrong", "not attempted"


class Wrong(Exception):
    """Raised inside a check with the hint the learner should see.

    ``covers`` names the process-wide changes the hint already explains ("grad", "safe_globals",
    "dtype", "cwd"), so the framework does not repeat them after it."""

    def __init__(self, message: str = "", *, covers: tuple[str, ...] | set[str] = ()):
        super().__init__(message)
        self.covers = set(covers)


class NotAttempted(Exception):
    """Raised inside a check when the answer is still a placeholder."""


@dataclass
class CheckResult:
    name: str
    status: str
    message: str
    notebook: str = ""
    tried: str = ""  # the last call of the learner's code: what went in, what came out

    def __bool__(self) -> bool:
        return self.status == CORRECT

    def __repr__(self) -> str:
        if self.status == CORRECT:
            return f"Correct! {self.message}".rstrip()
        if self.status == NOT_ATTEMPTED:
            return (
                "Not attempted yet: replace the placeholder in the cell above with your answer, "
                "then run this check again."
            )
        revisit = f" (revisit notebooks/{self.notebook}.ipynb)" if self.notebook else ""
        tried = f"\n  tried: {self.tried}" if self.tried else ""
        return f"Not yet: {self.message}{revisit}{tried}"

    __str__ = __repr__


@dataclass
class Exercise:
    name: str
    notebook: str
    fn: Callable[..., Any]
    wrong: list[tuple[Any, str]] = field(default_factory=list)
    right: list[Any] = field(default_factory=list)


REGISTRY: dict[str, Exercise] = {}


def _is_placeholder(answer: Any) -> bool:
    return answer is None or answer is Ellipsis


# The learner edition replaces a solution with ``pass  # Your turn: ...`` (labs_utils.maintenance.notebook_tools).
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
    if ops in (
        [("LOAD_CONST", None), ("RETURN_VALUE", None)],
        [("RETURN_CONST", None)],
    ):
        return True
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return False
    return _PLACEHOLDER_MARK in source


# What a learner's code can change for the whole process, and what a check must leave as it was.
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


def _describe_changes(
    before: dict[str, Any], after: dict[str, Any]
) -> list[tuple[str, str]]:
    """What the learner's code changed for the whole process, each as a hint."""
    out = []
    if before["grad"] and not after["grad"]:
        out.append(
            (
                "grad",
                "your function turned autograd off for the whole process and left it off "
                "(torch.set_grad_enabled(False)?): use `with torch.no_grad():` or `with torch.inference_mode():` "
                "around the forward pass, so that grad mode is back on when the function returns",
            )
        )
    elif after["grad"] != before["grad"]:
        out.append(
            (
                "grad",
                "your function switched grad mode on for the whole process and left it on; "
                "change it only inside a `with` block",
            )
        )
    # PyTorch registers its own entries when a module is first imported (torch._dynamo adds DTensor
    # and DeviceMesh): only what the learner's code added counts.
    added = {
        e for e in after["safe_globals"] - before["safe_globals"] if not _torch_own(e)
    }
    removed = before["safe_globals"] - after["safe_globals"]
    if added:
        names = ", ".join(sorted(_entry_name(e) for e in added))
        out.append(
            (
                "safe_globals",
                f"your function allowed {names} for every later torch.load in this process "
                "(torch.serialization.add_safe_globals is process-wide); allow it for one load only, "
                "with `with torch.serialization.safe_globals([...]):` around that torch.load",
            )
        )
    if removed:
        names = ", ".join(sorted(_entry_name(e) for e in removed))
        out.append(
            (
                "safe_globals",
                f"your function removed {names} from the process-wide safe-globals list "
                "(clear_safe_globals, or a safe_globals block over names registered elsewhere); "
                "leave entries you did not add alone",
            )
        )
    if after["dtype"] != before["dtype"]:
        out.append(
            (
                "dtype",
                f"your function changed the default dtype to {after['dtype']} for the whole process; "
                "pass dtype= where you need it instead of torch.set_default_dtype",
            )
        )
    if after["cwd"] != before["cwd"]:
        out.append(
            (
                "cwd",
                "your function changed the current folder (os.chdir) and did not change it back; "
                "build paths from the folder you were given instead",
            )
        )
    return out


def call_answer(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a learner's function that must return something, and return what it returned.

    * A function with no code yet (``pass``, ``...``, the learner edition's placeholder) or one
      that raises ``NotImplementedError`` counts as not attempted.
    * Any exception from the learner's code, including those that derive from ``BaseException``
      (``torch.distributed.checkpoint``'s ``CheckpointException`` does), becomes a ``Wrong`` hint that
      names it; only ``KeyboardInterrupt`` goes through, so the learner can still stop a cell.
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
        out = fn(*args, **kwargs)
        _last_call[:] = [f"{call} returned {_summary(out)}"]
    except NotImplementedError:
        raise NotAttempted from None
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # the learner's code failed: say how, as a hint
        _last_call[:] = [f"{call} raised {type(e).__name__}"]
        raise Wrong(
            f"your function raised {type(e).__name__}: {str(e).strip() or '(no message)'}"
        ) from None
    finally:
        after = _process_state()
        changes = _describe_changes(before, after)
        if changes:
            _restore_process_state(before)
            _side_effects.extend(c for c in changes if c not in _side_effects)
    return out


_last_call: list[
    str
] = []  # one line: the learner's last call in this check and its outcome


def _summary(obj: Any, depth: int = 0) -> str:
    """A short, machine-independent description of a value, for the "tried:" line of a hint."""
    import torch

    if isinstance(obj, torch.Tensor):
        return f"tensor{tuple(obj.shape)} {str(obj.dtype).removeprefix('torch.')}"
    if isinstance(obj, torch.nn.Module):
        return f"a {type(obj).__name__} model"
    if isinstance(obj, os.PathLike):
        return (
            f"a path ending in {os.fspath(obj).replace(os.sep, '/').split('/')[-1]!r}"
        )
    if isinstance(obj, (bool, int, float)) or obj is None:
        return repr(obj)
    if isinstance(obj, str):
        return repr(obj if len(obj) <= 40 else obj[:37] + "...")
    if isinstance(obj, dict) or (hasattr(obj, "keys") and hasattr(obj, "items")):
        keys = list(obj.keys())
        shown = ", ".join(repr(k) for k in keys[:3]) + (
            ", ..." if len(keys) > 3 else ""
        )
        return f"{type(obj).__name__} with {len(keys)} key(s) [{shown}]"
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = list(obj)
        simple = all(isinstance(i, (str, int, float)) for i in items)
        if len(items) <= 3 and (depth == 0 or simple):
            inner = ", ".join(_summary(i, 1) for i in items)
            return f"{type(obj).__name__} [{inner}]"
        return f"{type(obj).__name__} of {len(items)}"
    if callable(obj):
        return f"function {getattr(obj, '__name__', type(obj).__name__)}"
    return f"a {type(obj).__name__}"


def _summary_args(args: tuple, kwargs: dict) -> str:
    parts = [_summary(a, 1) for a in args] + [
        f"{k}={_summary(v, 1)}" for k, v in kwargs.items()
    ]
    return ", ".join(parts)


def _short(e: BaseException, limit: int = 600) -> str:
    text = str(e).strip() or "(no message)"
    return text if len(text) <= limit else text[:limit] + " ..."


def as_int(value: Any, what: str = "the answer") -> int:
    """One rule for every check that asks for a whole number: ``int`` and NumPy integers (anything
    ``operator.index`` accepts, one-element integer tensors too) pass; ``bool`` and ``float`` get a hint."""
    if isinstance(value, bool):
        raise Wrong(f"{what} should be a whole number, got the bool {value}")
    try:
        return operator.index(value)
    except TypeError:
        pass
    if isinstance(value, float) or type(value).__module__ == "numpy":
        hint = (
            f" ({int(value)} as int)"
            if isinstance(value, float) and float(value).is_integer()
            else ""
        )
        raise Wrong(
            f"{what} should be a whole number (an int), got {type(value).__name__} {value!r}{hint}: "
            "wrap it in int(...) or use integer arithmetic (//)"
        )
    raise Wrong(f"{what} should be a whole number (an int), got {type(value).__name__}")


def _torch_own(entry: Any) -> bool:
    obj = entry[0] if isinstance(entry, tuple) else entry
    return str(getattr(obj, "__module__", "")).split(".")[0] == "torch"


@contextlib.contextmanager
def isolated_safe_globals():
    """Inside, the process-wide safe-globals list holds only PyTorch's own entries, so an allowlist
    answer is judged on its own (entries a learner added earlier with ``add_safe_globals`` do not
    help it); on exit the list is exactly as it was, learner's entries included."""
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


def exercise(
    name: str,
    *,
    notebook: str,
    wrong: list[tuple[Any, str]] | None = None,
    right: list[Any] | None = None,
) -> Callable:
    """Register a check. ``wrong`` pairs a wrong answer with a piece of the hint it must get;
    ``right`` lists answers that must pass (besides the notebook's own solution)."""

    def deco(fn: Callable[..., Any]) -> Callable[..., CheckResult]:
        @functools.wraps(fn)
        def run(answer: Any = None, *args: Any, **kwargs: Any) -> CheckResult:
            if _is_placeholder(answer):
                return CheckResult(name, NOT_ATTEMPTED, "", notebook)
            _side_effects.clear()
            _last_call.clear()
            covered: set[str] = set()
            with (
                learner_state()
            ):  # a check seeds and draws freely; the learner's process stays as it was
                try:
                    msg = fn(answer, *args, **kwargs)
                    status = CORRECT
                except NotAttempted:
                    return CheckResult(name, NOT_ATTEMPTED, "", notebook)
                except Wrong as w:
                    status, msg, covered = WRONG, str(w), getattr(w, "covers", set())
                except KeyboardInterrupt:
                    raise
                except (
                    BaseException
                ) as e:  # never let a check crash the learner's notebook
                    status, msg = (
                        WRONG,
                        f"the check could not use your answer ({type(e).__name__}: {_short(e)})",
                    )
            effects = [hint for kind, hint in _side_effects if kind not in covered]
            _side_effects.clear()
            if (
                effects
            ):  # the answer worked only by changing the process for everyone after it
                extra = "; also, ".join(effects)
                msg = extra if status == CORRECT else f"{msg}; also, {extra}"
                status = WRONG
            tried = _last_call[0] if status == WRONG and _last_call else ""
            _last_call.clear()
            return CheckResult(name, status, msg or "", notebook, tried)

        if name in REGISTRY:
            raise ValueError(f"two checks are named {name!r}; give one another name")
        REGISTRY[name] = Exercise(
            name, notebook, run, list(wrong or []), list(right or [])
        )
        return run

    return deco


class _Checks:
    """Attribute access to every registered check: ``check.<name>(answer)``."""

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
        return sorted(REGISTRY)


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
