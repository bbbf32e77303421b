"""Checks for notebooks/01_state_dict_basics.ipynb: the buffers are compared with a reference on
several models; the save-and-reload is watched (what reaches the file gets other values)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Set
from pathlib import Path

import torch
import torch.nn as nn

from ..models import Net, SimpleModel, SmallCNN
from . import Case, Wrong, behaves_like, call_answer, exercise, same
from .fixtures import changed_keys, cnn_with_moved_statistics, replaced, snapshot

NB = "01_state_dict_basics"


class Gated(nn.Module):
    """A parameter not called weight/bias (``gain``), buffers that are not BatchNorm's (``mask``; a
    loss's class weights, ``loss_fn.weight``) and a non-persistent buffer (``proj.cache``)."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(4))
        self.register_buffer("mask", torch.ones(4))
        self.proj = nn.Linear(4, 4)
        self.proj.register_buffer("cache", torch.zeros(4), persistent=False)
        self.norm = nn.LayerNorm(4)
        self.loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 1.0, 1.0]))


def _expected_buffers(model: nn.Module) -> set[str]:
    params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    return set(model.state_dict()) - params


def _model(label: str, make) -> Case:
    """A fresh ``make()``; what is compared is the set returned, as a sorted list."""
    keys = lambda out, args: sorted(map(str, out)) if isinstance(out, Set) else type(out).__name__
    return Case(label, lambda: (make(),), keys)


_BUFFER_CASES = [
    _model("SmallCNN", SmallCNN),
    _model("the check's model Gated ('gain' a parameter, 'proj.cache' non-persistent)", Gated),
    _model(
        "nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))",
        lambda: nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)),
    ),
    _model(
        "BatchNorm1d(3, track_running_stats=False), which has no buffer in its state_dict",
        lambda: nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3, track_running_stats=False)),
    ),
]
_BN = ("running_mean", "running_var", "num_batches_tracked")
_named_buffers = lambda m: {n for n, _ in m.named_buffers()}
_by_suffix = lambda m: {k for k in m.state_dict() if not k.endswith((".weight", ".bias"))}
_batchnorm_only = lambda m: {k for k in m.state_dict() if k.endswith(_BN)}
_mean_and_var = lambda m: {k for k in m.state_dict() if k.endswith(_BN[:2])}
_every_key = lambda m: set(m.state_dict())
_notebooks_cnn = lambda m: _expected_buffers(SmallCNN())
_BUFFER_MISTAKES = {
    _named_buffers: "'proj.cache' of the check's model Gated is a non-persistent buffer: it lives on the module but is not in the state_dict; keep only keys of model.state_dict()",
    _by_suffix: "'gain' of the check's model Gated is a parameter (named_parameters() lists it) and its 'loss_fn.weight' a buffer: the end of a key does not tell a parameter from a buffer; compare with model.named_parameters()",
    _batchnorm_only: "the check's model Gated also has the buffers 'mask' and 'loss_fn.weight': not only BatchNorm registers buffers; compare model.state_dict() with model.named_parameters()",
    _mean_and_var: "BatchNorm keeps a third buffer besides running_mean and running_var: num_batches_tracked",
    _notebooks_cnn: "you returned SmallCNN's buffers whatever the model: work from the model you are given (the check passes several kinds), not from a model of your own",
    _every_key: "you returned every key of the state_dict, parameters included: state_dict() holds detached tensors (requires_grad is False for all of them), so nothing in it marks a buffer; compare its keys with model.named_parameters()",
}


@exercise("buffers_in_state_dict", notebook=NB)
def buffers_in_state_dict(fn) -> str:
    """``fn(model)`` returns the set of ``model.state_dict()`` keys that are buffers, not parameters.
    Tried on SmallCNN and on three models of the check's own (see ``Gated``)."""
    out = call_answer(fn, SmallCNN())
    bad = (
        out if not isinstance(out, Set) else next((k for k in out if not isinstance(k, str)), None)
    )
    if bad is not None:
        what = "tensors (from model.buffers()?)" if torch.is_tensor(bad) else type(bad).__name__
        raise Wrong(
            f"return a set of key strings, the names as they appear in model.state_dict() (wrap them in set(...)), got {what}"
        )
    behaves_like(fn, _expected_buffers, _BUFFER_CASES, list(_BUFFER_MISTAKES.items()))
    return "BatchNorm's statistics and counter, other persistent buffers too, never a non-persistent one: right on SmallCNN and on three other models."


def _models() -> list[nn.Module]:
    """Three classes (a hard-coded one fails two), one with BatchNorm buffers that were updated."""
    return [SimpleModel(), cnn_with_moved_statistics(123), Net()]


def _other_values(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same keys and shapes as ``state``, every value different."""
    return {k: (v + 3 if not v.is_floating_point() else v * -2 + 1.5) for k, v in state.items()}


def _planting(fn, path: Path, original: dict, planted: dict, saved: list):
    """While the answer runs, ``torch.save`` (under any name it was imported as) writes ``planted``
    where the answer saves the model's state_dict to ``path``; ``saved`` gets what it passed."""
    real = torch.serialization.save

    def save(obj, f, *args, **kwargs):
        name = f if isinstance(f, str | os.PathLike) else getattr(f, "name", None)  # a file?
        if isinstance(name, str | os.PathLike) and Path(name) == path:
            saved.append(obj)
            obj = planted if isinstance(obj, Mapping) and same(dict(obj), original) else obj
        return real(obj, f, *args, **kwargs)

    return replaced(fn, (torch, torch.serialization), save=save)


@exercise("save_and_reload", notebook=NB)
def save_and_reload(fn) -> str:
    """``fn(model, path)`` saves ``model``'s state_dict to ``path`` and returns a new instance of the
    same class loaded from that file. What the answer saves to ``path`` lands in the file with other
    values: only a model loaded from the file holds them."""
    for model in _models():
        name, original = type(model).__name__, snapshot(model)
        planted, saved = _other_values(original), []
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
            path = Path(tmp) / "weights.pth"
            with _planting(fn, path, original, planted, saved):
                try:
                    fresh = call_answer(fn, model, path)
                except Wrong as w:
                    if hint := _saved_hint(model, saved, original, name):
                        raise Wrong(hint) from None
                    if "in loading state_dict for" in str(w) and f"for {name}:" not in str(w):
                        raise Wrong(
                            f"given a {name}, your function loaded into another class: build the same class as the model you are given, type(model)() ({str(w).splitlines()[0].rstrip(':')})"
                        ) from None
                    raise
        hint = _saved_hint(model, saved, original, name)
        if hint := hint or _fresh_hint(fresh, model, original, planted, name):
            raise Wrong(hint)
    return "a fresh model of the model's own class, weights and buffers from a file that holds only the state_dict (tried on SimpleModel, SmallCNN with moved BatchNorm statistics, Net)."


def _saved_hint(model: nn.Module, saved: list, original: dict, name: str) -> str | None:
    changed = changed_keys(model, original)
    if changed:
        return f"your function changed the model it was given ({changed[0]!r}); save it as it is, do not modify it"
    if not saved:
        return "nothing was written to path; call torch.save(model.state_dict(), path)"
    for obj in saved:
        if not isinstance(obj, Mapping):
            whole = " (a whole model object, which safe loading, weights_only=True, refuses)"
            return f"the file should hold model.state_dict(), a dict of tensors, got {type(obj).__name__}{whole if isinstance(obj, nn.Module) else ''}"
        missing = sorted(set(original) - set(obj))
        if missing and obj and all(isinstance(v, Mapping) for v in obj.values()):
            return f"the file should hold exactly model.state_dict(), not a dict around it (its keys are {sorted(obj)})"
        if missing and all(k.endswith(_BN) for k in missing):
            return f"the file saved for {name} lacks its buffers ({missing[0]}): save model.state_dict(), which holds parameters and buffers, not named_parameters()"
        if not same(dict(obj), original):
            return f"the file should hold exactly model.state_dict() of {name}, as it is; its keys or values differ"
    return None


def _fresh_hint(fresh, model, original: dict, planted: dict, name: str) -> str | None:
    if fresh is model:
        return "you returned the same object you were given; build a new instance with type(model)() and load the state_dict into it"
    if not isinstance(fresh, nn.Module):
        extra = ""
        if type(fresh).__name__ == "_IncompatibleKeys":
            extra = ": load_state_dict returns this report of missing and unexpected keys, not the model; return the model itself"
        return f"return the new model, got {type(fresh).__name__}{extra}"
    if type(fresh) is not type(model):
        return f"given a {name}, you returned a {type(fresh).__name__}: build the same class as the model you are given, type(model)(), not a class of your choice"
    state = fresh.state_dict()
    k = next((k for k, v in planted.items() if not same(state.get(k), v)), None)
    if k is not None and k in state and state[k].dtype != planted[k].dtype:
        return f"the returned model's {k!r} is {state[k].dtype}, the file's {planted[k].dtype}: build the new model as the class builds it, without changing its dtype"
    if k is not None and k in state and torch.equal(state[k], original[k]):
        return f"the returned {name}'s {k!r} did not come from the file: the check wrote other values into the file than your model holds, and the model you returned still has the original model's; load what torch.load(path) returned: fresh.load_state_dict(torch.load(path))"
    if k is not None:
        return f"the returned model's {k!r} differs from the file: did you call load_state_dict on it with what torch.load(path) returned?"
    return None
