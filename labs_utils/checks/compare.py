"""Comparing a learner's answer with a reference solution on cases (``behaves_like``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import calling
from .calling import NotAttempted, Wrong, run_answer, summary


def same(a: Any, b: Any) -> bool:
    """Equal as a learner's result counts: tensors and NumPy arrays by dtype, shape and values;
    mappings by keys (in any order) and values; sequences item by item (a ``torch.Size`` equals a
    tuple); floats within 1e-6; models by their state_dict, ``requires_grad`` flags and mode."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (
            type(a) is type(b) and (a.dtype, a.shape) == (b.dtype, b.shape) and bool((a == b).all())
        )
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
    arguments after the call). ``look`` may raise ``Wrong`` to reject the learner's answer at once
    with its own hint, for what no known mistake does (no dict returned, the file refused); it
    runs on the reference's and the mistakes' results too, and must not raise for them."""

    label: str
    make: Callable[[], tuple]
    look: Callable[[Any, tuple], Any] | None = None


@dataclass
class _Outcome:
    value: Any = None
    raised: str = ""
    hint: str = ""  # for the learner's own run: the framework's hint when it raised
    record: tuple = ()  # for the learner's own run: its "tried:" and "at:" lines

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
    return summary(value)


def _outcome(fn: Any, case: Case, learner: bool = False) -> _Outcome:
    args = case.make()
    if learner:
        calling._where.clear()
    try:
        out = run_answer(fn, *args) if learner else fn(*args)
    except (NotAttempted, KeyboardInterrupt):
        raise
    except Wrong as w:
        result = _Outcome(raised=w.raised or "Wrong", hint=str(w))
    except Exception as e:
        result = _Outcome(raised=type(e).__name__)
    else:  # outside the try: a Wrong raised by ``look`` reaches the learner as it is
        result = _Outcome(case.look(out, args) if case.look else (out, args))
    if learner:
        result.record = (calling._last_call[:], calling._where[:])
    return result


def behaves_like(
    answer: Any,
    reference: Callable[..., Any],
    cases: Sequence[Case],
    mistakes: Sequence[tuple[Callable[..., Any], str]] = (),
) -> None:
    """Raise ``Wrong`` unless ``answer`` does what ``reference`` does on every case. The hint is
    that of the first known mistake (a small wrong function) that behaves like the answer on
    every case, or else it names the first case where answer and reference differ; the "tried:"
    and "at:" lines show the answer's call on that case. Two runs that raise behave alike when
    they raise the same exception type: messages are not compared, as they may name what differs
    from run to run (a temporary folder)."""
    got = [_outcome(answer, case, learner=True) for case in cases]
    for case, have in zip(cases, got):
        want = _outcome(reference, case)
        if have.matches(want):
            continue
        calling._last_call[:], calling._where[:] = have.record
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
        return f"gave {_where_differs(have.value, want.value)}"
    (out, args), (expected, before) = have.value, want.value
    if out is None and expected is not None:
        return "returned None: did you forget the `return` line at its end?"
    if not same(out, expected):
        return f"returned {_where_differs(out, expected)}"
    return f"changed your input: {_where_differs(args, before)} (expected it left as it was)"


def _where_differs(a: Any, b: Any, at: str = "") -> str:
    """The first place where ``a`` (what the answer gave) and ``b`` (expected) differ, in words:
    "'el.weight' at [0]; expected 'weight'"."""
    here = f" at {at}" if at else ""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        extra, missing = [k for k in a if k not in b], [k for k in b if k not in a]
        if extra or missing:
            what = f"{extra[0]!r}, which is not expected" if extra else f"no {missing[0]!r}"
            return f"{_show(a)}{here} with {what}; expected {_show(b)}"
        k = next(k for k in b if not same(a[k], b[k]))
        return _where_differs(a[k], b[k], f"{at}[{k!r}]")
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        i = next(i for i in range(len(b)) if not same(a[i], b[i]))
        return _where_differs(a[i], b[i], f"{at}[{i}]")
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and _show(a) == _show(b):
        return f"{_show(a)}{here}, with other values than expected"
    return f"{_show(a)}{here}; expected {_show(b)}"
