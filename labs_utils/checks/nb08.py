"""Checks for notebooks/08_safe_loading.ipynb: loads say ``weights_only=True`` explicitly and run
inside ``isolated_safe_globals()``, so what a learner allowed earlier neither helps nor is lost."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import functools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import Case, Wrong, behaves_like, exercise, isolated_safe_globals, same
from .calling import entry_name
from .fixtures import refused_global, scratch_file

NB = "08_safe_loading"


# classes a weights_only load refuses: two dataclasses, an enum of strings and one of ints
_Info = dataclasses.make_dataclass("_Info", [("arch", str), ("epoch", int)])
_Run = dataclasses.make_dataclass("_Run", [("name", str), ("seed", int), ("tags", list)])
_Info.__module__ = _Run.__module__ = __name__  # so that pickle finds them here
_Stage = enum.Enum("_Stage", {"TRAIN": "train", "FINETUNE": "finetune"})
_Phase = enum.Enum("_Phase", {"WARMUP": 1, "MAIN": 2})


def _cases() -> list[dict[str, Any]]:
    """Checkpoints to convert: the notebook's shape, and one with other keys, other NumPy types, an
    enum with an int value, a top-level tensor (a GradScaler-style scale) and values already plain."""
    gen = torch.Generator().manual_seed(0)
    first = {
        "model": {"fc.weight": torch.randn(2, 3, generator=gen), "fc.bias": torch.zeros(2)},
        "epoch": 4,
        "best_val_loss": np.float64(0.25),
        "step": np.int64(120),
        "info": _Info("SimpleModel", 4),
        "stage": _Stage.FINETUNE,
        "args": argparse.Namespace(lr=0.001, epochs=5),
    }
    second = {
        "weights": {"head.weight": torch.randn(4, 2, generator=gen)},
        "val_acc": np.float32(0.75),
        "global_step": np.int32(7),
        "run": _Run("baseline", 3, ["small"]),
        "phase": _Phase.WARMUP,
        "hparams": argparse.Namespace(batch_size=32, dropout=0.1),
        "loss_scale": torch.tensor(65536.0),
        "note": "plain text",
        "history": [0.5, 0.4],
    }
    return [first, second]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, argparse.Namespace):
        return dict(vars(value))
    return value


def _each(convert: Any) -> Any:
    """The reference with ``convert`` for ``_plain`` (a known mistake with another one)."""
    return lambda ckpt: {k: convert(v) for k, v in ckpt.items()}


def _typed(d: dict) -> dict:
    """Each value with its type, so that 120 and 120.0 (or '1' and 1) differ."""
    scalar = (str, int, float, bool, type(None))
    return {k: f"{v!r} ({type(v).__name__})" if isinstance(v, scalar) else v for k, v in d.items()}


def _as_loaded(case: int, out: Any, args: tuple) -> Any:
    """The checkpoint as torch.load(weights_only=True) gives it back. What neither the reference
    nor a known mistake does is told at once: no dict, keys lost or added, the input changed, a
    file that does not load."""
    if not isinstance(out, dict):
        raise Wrong(f"return a dict (the new checkpoint), got {type(out).__name__}")
    original = _cases()[case]
    missing, extra = sorted(set(original) - set(out)), sorted(set(out) - set(original))
    if missing:
        raise Wrong(f"key {missing[0]!r} is missing: keep every entry, converted, not dropped")
    if extra:
        raise Wrong(f"key {extra[0]!r} was not in the checkpoint: keep the keys as they are")
    try:
        with scratch_file("ckpt.pth") as path:
            torch.save(out, path)
            with isolated_safe_globals():
                loaded = torch.load(path, weights_only=True)
    except Exception as e:
        name = refused_global(e) or type(e).__name__
        allowed = {entry_name(x) for x in torch.serialization.get_safe_globals()}
        hint = (
            " (you allowed it for the whole process with add_safe_globals, but the file must load without that: convert the value)"
            if name in allowed
            else ""
        )
        raise Wrong(
            f"torch.load(weights_only=True) still refuses your checkpoint: it needs {name}; convert that value to a plain type{hint}"
        ) from None
    if args[0] is out or not same(_typed(args[0]), _typed(original)):
        raise Wrong(
            "your function changed the dict it was given (converted in place): build a new dict, out = {}, fill it, return it, and leave ckpt as it was"
        )
    return _typed(loaded)


# fmt: off
_LOADABLE_MISTAKES = [
    (_each(lambda v: v.item() if hasattr(v, "item") else _plain(v)), "'loss_scale' holds a tensor, and it became a float (.item() on everything that has it): keep every tensor as it is; only NumPy scalars need .item()"),
    (_each(lambda v: float(v) if isinstance(v, np.generic) else _plain(v)), "'step' is an integer NumPy scalar (int64): it should load as the int 120, got the float 120.0; .item() keeps the kind (an int stays an int), float() does not"),
    (_each(lambda v: v if isinstance(v, (dict, int, torch.Tensor)) else str(v)), "'best_val_loss' became a str ('0.25'); use a number or a dict so it stays usable (.item(), dataclasses.asdict, vars)"),
    (_each(lambda v: v.name if isinstance(v, enum.Enum) else _plain(v)), "'stage' should load as 'finetune', the enum's .value, got 'FINETUNE', its .name"),
    (_each(lambda v: dataclasses.astuple(v) if dataclasses.is_dataclass(v) else _plain(v)), "'info' should load as {'arch': 'SimpleModel', 'epoch': 4} (dataclasses.asdict keeps the field names), got the tuple ('SimpleModel', 4) of dataclasses.astuple"),
]
# fmt: on


@exercise("make_loadable", notebook=NB)
def make_loadable(fn) -> str:
    """``fn(ckpt)`` returns a new dict that ``torch.load(weights_only=True)`` accepts, values converted."""
    cases = [
        Case(label, lambda i=i: (_cases()[i],), functools.partial(_as_loaded, i))
        for i, label in enumerate(["the notebook's checkpoint", "a checkpoint with other keys"])
    ]
    behaves_like(fn, _each(_plain), cases, _LOADABLE_MISTAKES)
    return "every value is a plain type of the right kind now, and torch.load(weights_only=True) accepts the file."


def _loads_with(path: Path, allow: list) -> BaseException | None:
    with isolated_safe_globals():  # the learner's process-wide entries neither help nor get removed
        try:
            with torch.serialization.safe_globals(list(allow)):
                torch.load(path, weights_only=True)
        except Exception as e:
            return e
    return None


def _entry_object(item: Any) -> Any:
    pair = isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], str)
    return item[0] if pair else item


def _label(item: Any) -> str:
    obj = _entry_object(item)
    return getattr(obj, "__qualname__", None) or repr(obj)


@exercise("allowlist_for_exercise_file", notebook=NB)
def allowlist_for_exercise_file(allow) -> str:
    """``allow``: the narrowest list for ``safe_globals`` that loads the exercise file, judged on its own."""
    if not isinstance(allow, (list, tuple, set, frozenset)):
        got = type(allow).__name__
        if callable(allow) and hasattr(allow, "__name__"):
            kind = "class" if isinstance(allow, type) else "function"
            got = f"the {kind} {allow.__name__} alone: put every object the file needs in one list"
        raise Wrong(f"give a list of objects, e.g. [argparse.Namespace, ...]; got {got}")
    allow = sorted(allow, key=_label) if isinstance(allow, (set, frozenset)) else list(allow)
    strings = [a for a in allow if isinstance(a, str)]
    if strings:
        raise Wrong(
            f"pass the objects themselves, not their names: {strings[0]!r} is a string; import the object and put it in the list"
        )
    if not allow:
        raise Wrong(
            "your list is empty; the file needs some objects allowed (an allowance made for the whole process with add_safe_globals does not count: put them in the list)"
        )
    objs = [_entry_object(item) for item in allow]
    for i, item in enumerate(allow):
        if any(objs[i] is o for o in objs[:i]):
            raise Wrong(f"{_label(item)} is listed twice; list each object once")
    with scratch_file("exercise.pth") as path:
        model = {"fc.weight": torch.randn(2, 3, generator=torch.Generator().manual_seed(0))}
        args = argparse.Namespace(lr=0.01, epochs=5)
        torch.save({"model": model, "best_val_loss": np.float64(0.25), "args": args}, path)
        err = _loads_with(path, allow)
        if err is not None:
            raise Wrong(
                f"torch.load still refuses the file: it also needs {refused_global(err) or type(err).__name__} (the static scan cannot see classes made while loading; read the error)"
            )
        for i, item in enumerate(allow):
            if _loads_with(path, allow[:i] + allow[i + 1 :]) is None:
                raise Wrong(
                    f"the file does not need {_label(item)}: it loads without it; allow only what it needs"
                )
    return (
        f"these {len(allow)} objects, and nothing else, let the file load with weights_only=True."
    )
