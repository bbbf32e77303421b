"""Checks for notebooks/01_state_dict_basics.ipynb."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Set
from pathlib import Path

import torch
import torch.nn as nn

from . import Wrong, call_answer, exercise
from .fixtures import cnn_with_moved_statistics, patched_torch_load, snapshot

NB = "01_state_dict_basics"


class Gated(nn.Module):
    """The check's model: a parameter not called weight/bias (``gain``), buffers that are not
    BatchNorm's (``mask``, and ``loss_fn.weight``: a loss with class weights keeps them as a
    buffer called ``weight``), and a non-persistent buffer inside a submodule (``proj.cache``)."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(4))
        self.register_buffer("mask", torch.ones(4))
        self.proj = nn.Linear(4, 4)
        self.proj.register_buffer("cache", torch.zeros(4), persistent=False)
        self.norm = nn.LayerNorm(4)
        self.loss_fn = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 1.0, 1.0]))


class NoBuffers(nn.Module):
    """No buffer in the state_dict: BatchNorm without running statistics keeps them as None."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.bn = nn.BatchNorm1d(3, track_running_stats=False)


def _buffer_cases() -> list[nn.Module]:
    from ..models import SmallCNN

    return [SmallCNN(), Gated(), nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), NoBuffers()]


def _expected_buffers(model: nn.Module) -> set[str]:
    params = {n for n, _ in model.named_parameters(remove_duplicate=False)}
    return set(model.state_dict()) - params


@exercise("buffers_in_state_dict", notebook=NB)
def buffers_in_state_dict(fn) -> str:
    """``fn(model)`` returns the set of ``model.state_dict()`` keys that are buffers, not parameters.
    Tried on SmallCNN and on three models of the check's own (see ``Gated``, ``NoBuffers``)."""
    for model in _buffer_cases():
        expected = _expected_buffers(model)
        name = type(model).__name__
        answer = call_answer(fn, model)
        if isinstance(answer, dict):
            raise Wrong(
                f"return a set of key strings, not a {type(answer).__name__}: set(...) of the names"
            )
        if not isinstance(answer, Set):
            raise Wrong(
                f"return a set of key strings (wrap it in set(...)), got {type(answer).__name__}"
            )
        if any(isinstance(a, torch.Tensor) for a in answer):
            raise Wrong(
                "your set holds tensors (from model.buffers()?), not key strings: return the names, as they appear in model.state_dict()"
            )
        if not all(isinstance(a, str) for a in answer):
            bad = next(a for a in answer if not isinstance(a, str))
            raise Wrong(f"return key strings only, got {type(bad).__name__} {bad!r}")
        if answer == expected:
            continue
        where = f"the check's model {name}" if name != "SmallCNN" else "SmallCNN"
        not_saved = sorted(answer - set(model.state_dict()))
        if not_saved and not_saved[0] in {n for n, _ in model.named_buffers()}:
            raise Wrong(
                f"{not_saved[0]!r} of {where} is a non-persistent buffer: it lives on the module but is not in the state_dict; keep only keys of model.state_dict()"
            )
        if not_saved:
            raise Wrong(
                f"{not_saved[0]!r} is not a key of {where}: work from the model you are given (the check passes several kinds), not from a model of your own"
            )
        if answer == set(model.state_dict()):
            raise Wrong(
                f"you returned every key of {where}'s state_dict, parameters included: state_dict() holds detached tensors (requires_grad is False for all of them), so nothing in it marks a buffer; compare its keys with model.named_parameters()"
            )
        params = sorted(answer - expected)
        if params:
            raise Wrong(
                f"{params[0]!r} of {where} is a parameter (named_parameters() lists it): the end of a key does not tell a parameter from a buffer; compare with model.named_parameters()"
            )
        missing = sorted(expected - answer)
        bn = ("running_mean", "running_var", "num_batches_tracked")
        if all(k.endswith(bn) for k in answer) and any(not k.endswith(bn) for k in missing):
            other = next(k for k in missing if not k.endswith(bn))
            raise Wrong(
                f"{where} also has the buffer {other!r}: not only BatchNorm registers buffers; compare model.state_dict() with model.named_parameters()"
            )
        if all(k.endswith("num_batches_tracked") for k in missing):
            raise Wrong(
                "BatchNorm keeps a third buffer besides running_mean and running_var: num_batches_tracked"
            )
        raise Wrong(
            f"{len(missing)} buffer key(s) of {where} missing, e.g. {missing[0]!r}: compare model.state_dict() keys with model.named_parameters()"
        )
    return "BatchNorm's statistics and counter, other persistent buffers too, never a non-persistent one: right on SmallCNN and on three other models."


def _models() -> list[nn.Module]:
    """Three classes (a hard-coded one fails two), one with BatchNorm buffers that were updated."""
    from ..models import Net, SimpleModel

    return [SimpleModel(), cnn_with_moved_statistics(123), Net()]


def _other_values(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same keys and shapes as ``state``, every value different."""
    return {k: (v + 3 if not v.is_floating_point() else v * -2 + 1.5) for k, v in state.items()}


_REAL_LOAD = torch.load


@exercise("save_and_reload", notebook=NB)
def save_and_reload(fn) -> str:
    """``fn(model, path)`` saves ``model``'s state_dict to ``path`` and returns a new instance of the
    same class loaded from that file. At the answer's first ``torch.load`` the file is checked, then
    rewritten in place with other values: only a model loaded from the file holds them."""
    for model in _models():
        name = type(model).__name__
        original = snapshot(model)
        planted = _other_values(original)
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
            path = Path(tmp) / "weights.pth"
            swapped: list[bool] = []
            from_memory: list[bool] = []  # torch.load got the file's bytes in a BytesIO
            problems: list[Wrong] = []  # found in the file at the answer's first torch.load

            def plant() -> None:
                if swapped or problems or not path.exists():
                    return
                try:
                    _check_model_unchanged(model, original)
                    _check_saved(_read_saved(path), original, name)
                except Wrong as w:
                    problems.append(w)
                    return
                buf = io.BytesIO()
                torch.save(planted, buf)
                # in place: a file object opened before reads the new bytes
                with open(path, "r+b") as f:
                    f.truncate(0)
                    f.write(buf.getvalue())
                swapped.append(True)

            def load(*args, **kwargs):
                source = args[0] if args else kwargs.get("f")
                if isinstance(source, io.BytesIO) and path.exists() and not swapped:
                    # the file's bytes, read into memory before torch.load: they came from the file,
                    # but too early for the check to change them
                    if source.getvalue() == path.read_bytes():
                        from_memory.append(True)
                else:
                    plant()
                return _REAL_LOAD(*args, **kwargs)

            with patched_torch_load(fn, load):
                try:
                    fresh = call_answer(fn, model, path)
                except Wrong as w:
                    if problems:
                        raise problems[0] from None
                    if "in loading state_dict for" in str(w) and f"for {name}:" not in str(w):
                        raise Wrong(
                            f"given a {name}, your function loaded into another class: build the same class as the model you are given, type(model)() ({str(w).splitlines()[0].rstrip(':')})"
                        ) from None
                    raise
            if problems:
                raise problems[0]
            if not path.exists():
                raise Wrong(
                    "nothing was written to path; call torch.save(model.state_dict(), path)"
                )
            if not swapped:
                _check_model_unchanged(model, original)
                _check_saved(_read_saved(path), original, name)
        if from_memory and not swapped:  # the values in the file are the original ones
            _check_fresh(fresh, model, original, original, True, name)
        else:
            _check_fresh(fresh, model, original, planted, bool(swapped), name)
    return "a fresh model of the model's own class, weights and buffers from a file that holds only the state_dict (tried on SimpleModel, SmallCNN with moved BatchNorm statistics, Net)."


def _read_saved(path: Path) -> dict:
    try:
        return _REAL_LOAD(path, weights_only=True)
    except Exception:
        raise Wrong(
            "the file holds more than tensors (a whole model object?): save model.state_dict(), which safe loading (weights_only=True) reads"
        ) from None


def _check_saved(saved, original: dict, name: str) -> None:
    if not isinstance(saved, dict):
        raise Wrong(
            f"the file should hold model.state_dict() (a dict of tensors), got {type(saved).__name__}"
        )
    if set(saved) != set(original):
        missing = sorted(set(original) - set(saved))
        if missing and saved and all(isinstance(v, dict) for v in saved.values()):
            raise Wrong(
                f"the file should hold exactly model.state_dict(), not a dict around it (its keys are {sorted(saved)})"
            )
        bn = ("running_mean", "running_var", "num_batches_tracked")
        if missing and all(k.endswith(bn) for k in missing):
            raise Wrong(
                f"the file saved for {name} lacks its buffers ({missing[0]}): save model.state_dict(), which holds parameters and buffers, not named_parameters()"
            )
        raise Wrong(
            f"the file should hold exactly model.state_dict() of {name}; its keys differ (e.g. {(missing or sorted(set(saved) - set(original)))[0]!r})"
        )
    for k, v in original.items():
        if not isinstance(saved[k], torch.Tensor) or not torch.equal(saved[k], v):
            raise Wrong(f"the file's {k!r} is not the model's: save model.state_dict() as it is")


def _check_model_unchanged(model: nn.Module, original: dict) -> None:
    for k, v in model.state_dict().items():
        if not torch.equal(v, original[k]):
            raise Wrong(
                f"your function changed the model it was given ({k!r}); save it as it is, do not modify it"
            )


def _check_fresh(
    fresh, model, original: dict, planted: dict, loaded_from_file: bool, name: str
) -> None:
    if fresh is model:
        raise Wrong(
            "you returned the same object you were given; build a new instance with type(model)() and load the state_dict into it"
        )
    if not isinstance(fresh, nn.Module):
        extra = ""
        if type(fresh).__name__ == "_IncompatibleKeys":
            extra = ": load_state_dict returns this report of missing and unexpected keys, not the model; return the model itself"
        raise Wrong(f"return the new model, got {type(fresh).__name__}{extra}")
    if type(fresh) is not type(model):
        raise Wrong(
            f"given a {name}, you returned a {type(fresh).__name__}: build the same class as the model you are given, type(model)(), not a class of your choice"
        )
    _check_model_unchanged(model, original)
    if not loaded_from_file:
        raise Wrong(
            "the new model must get its weights from the file: load it with torch.load(path) (copying the model in memory proves nothing about the file)"
        )
    state = fresh.state_dict()
    if set(state) != set(planted):
        raise Wrong(f"the returned model's keys differ from the saved state_dict of {name}")
    for k, v in planted.items():
        if state[k].dtype != v.dtype:
            raise Wrong(
                f"the returned model's {k!r} is {state[k].dtype}, the file's {v.dtype}: build the new model as the class builds it, without changing its dtype"
            )
        if torch.equal(state[k], v):
            continue
        if torch.equal(state[k], original[k]):
            raise Wrong(
                f"the returned {name}'s {k!r} did not come from the file: the check changed the values in the file between your torch.save and your torch.load, and your model still holds the original model's; load what torch.load returned: fresh.load_state_dict(torch.load(path))"
            )
        raise Wrong(
            f"the returned model's {k!r} differs from the file: did you call load_state_dict on it with what torch.load(path) returned?"
        )
