"""Self-checks for the "Your turn" exercises.

In a notebook::

    from labs_utils.checks import check
    check.keys_of_simple_model(my_answer)

Every check returns a ``CheckResult`` that renders as one line:

* ``Not attempted yet: ...`` when the answer is still the placeholder (``...`` or ``None``, or a
  function that returns nothing). It never raises, so a learner can run a whole notebook.
* ``Not yet: <a specific hint> (revisit notebooks/NN_topic.ipynb)`` for a wrong answer.
* ``Correct! ...`` otherwise.

Checks live in one module per notebook (``nb01.py``, ``nb02.py``, ...), registered with
``@exercise``. Each declares wrong answers with the hint they must get, which the tests use.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import pkgutil
from unittest import mock
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["check", "exercise", "CheckResult", "Wrong", "NotAttempted", "REGISTRY", "call_answer", "spy"]

CORRECT, WRONG, NOT_ATTEMPTED = "correct", "wrong", "not attempted"


class Wrong(Exception):
    """Raised inside a check with the hint the learner should see."""


class NotAttempted(Exception):
    """Raised inside a check when the answer is still a placeholder."""


@dataclass
class CheckResult:
    name: str
    status: str
    message: str
    notebook: str = ""

    def __bool__(self) -> bool:
        return self.status == CORRECT

    def __repr__(self) -> str:
        if self.status == CORRECT:
            return f"Correct! {self.message}".rstrip()
        if self.status == NOT_ATTEMPTED:
            return ("Not attempted yet: replace the placeholder in the cell above with your answer, "
                    "then run this check again.")
        revisit = f" (revisit notebooks/{self.notebook}.ipynb)" if self.notebook else ""
        return f"Not yet: {self.message}{revisit}"

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


def call_answer(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a learner's function; a placeholder body (``pass``/``...``) counts as not attempted."""
    if not callable(fn):
        raise Wrong(f"expected a function, got {type(fn).__name__}; define it with def and pass its name")
    try:
        out = fn(*args, **kwargs)
    except NotImplementedError:
        raise NotAttempted from None
    except Exception as e:  # the learner's code failed: say how, as a hint
        raise Wrong(f"your function raised {type(e).__name__}: {e}") from None
    if _is_placeholder(out):
        raise NotAttempted
    return out


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


def exercise(name: str, *, notebook: str, wrong: list[tuple[Any, str]] | None = None,
             right: list[Any] | None = None) -> Callable:
    """Register a check. ``wrong`` pairs a wrong answer with a piece of the hint it must get;
    ``right`` lists answers that must pass (besides the notebook's own solution)."""

    def deco(fn: Callable[..., Any]) -> Callable[..., CheckResult]:
        @functools.wraps(fn)
        def run(answer: Any = None, *args: Any, **kwargs: Any) -> CheckResult:
            if _is_placeholder(answer):
                return CheckResult(name, NOT_ATTEMPTED, "", notebook)
            from ..checkpoints import capture_rng_state, restore_rng_state

            rng = capture_rng_state()  # a check seeds and draws freely; the learner's generators stay as they were
            try:
                msg = fn(answer, *args, **kwargs)
            except NotAttempted:
                return CheckResult(name, NOT_ATTEMPTED, "", notebook)
            except Wrong as w:
                return CheckResult(name, WRONG, str(w), notebook)
            except Exception as e:  # never let a check crash the learner's notebook
                return CheckResult(name, WRONG, f"the check could not use your answer ({type(e).__name__}: {e})",
                                   notebook)
            finally:
                restore_rng_state(rng)
            return CheckResult(name, CORRECT, msg or "", notebook)

        if name in REGISTRY:
            raise ValueError(f"two checks are named {name!r}; give one another name")
        REGISTRY[name] = Exercise(name, notebook, run, list(wrong or []), list(right or []))
        return run

    return deco


class _Checks:
    """Attribute access to every registered check: ``check.<name>(answer)``."""

    def __getattr__(self, name: str) -> Callable[..., CheckResult]:
        _load_all()
        try:
            return REGISTRY[name].fn
        except KeyError:
            raise AttributeError(f"no check named {name!r}; known checks: {', '.join(sorted(REGISTRY))}") from None

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
