"""Checks for notebooks/08_safe_loading.ipynb: loads say ``weights_only=True`` explicitly and run
inside ``isolated_safe_globals()``, so what a learner allowed earlier neither helps nor is lost."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import enum
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import Wrong, call_answer, exercise, isolated_safe_globals
from .calling import entry_name
from .fixtures import scratch_file

NB = "08_safe_loading"


@dataclasses.dataclass
class _Info:
    arch: str
    epoch: int


@dataclasses.dataclass
class _Run:
    name: str
    seed: int
    tags: list


class _Stage(enum.Enum):
    TRAIN = "train"
    FINETUNE = "finetune"


class _Phase(enum.Enum):
    WARMUP = 1
    MAIN = 2


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


def _expected(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, argparse.Namespace):
        return dict(vars(value))
    return value


def _refused_global(err: BaseException) -> str:
    m = re.search(r"GLOBAL (\S+) was not an allowed global|but got <class '([^']+)'>", str(err))
    return (m.group(1) or m.group(2)) if m else type(err).__name__


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _learner_allowed() -> set[str]:
    """Dotted names of what the process-wide safe-globals list allows now."""
    return {entry_name(e) for e in torch.serialization.get_safe_globals()}


def _save_and_load(obj: Any) -> Any:
    """torch.save, then torch.load with weights_only=True and the learner's process-wide allowlist hidden."""
    with scratch_file("ckpt.pth") as path:
        torch.save(obj, path)
        with isolated_safe_globals():
            return torch.load(path, weights_only=True)


@exercise("make_loadable", notebook=NB)
def make_loadable(fn) -> str:
    """``fn(ckpt)`` returns a new dict that ``torch.load(weights_only=True)`` accepts, values converted."""
    for original in _cases():
        # the learner's function gets this dict; ``original`` keeps what it held
        given = copy.copy(original)
        out = call_answer(fn, given)
        if not isinstance(out, dict):
            raise Wrong(f"return a dict (the new checkpoint), got {type(out).__name__}")
        try:
            loaded = _save_and_load(out)
        except Exception as e:
            name = _refused_global(e)
            hint = ""
            if name in _learner_allowed():
                hint = " (you allowed it for the whole process with add_safe_globals, but the file must load without that: convert the value)"
            raise Wrong(
                f"torch.load(weights_only=True) still refuses your checkpoint: it needs {name}; convert that value to a plain type{hint}"
            ) from None
        if (
            out is given
            or given.keys() != original.keys()
            or any(given[k] is not original[k] for k in original)
        ):
            raise Wrong(
                "your function changed the dict it was given (converted in place): build a new dict, out = {}, fill it, return it, and leave ckpt as it was"
            )
        missing = sorted(set(original) - set(loaded))
        if missing:
            raise Wrong(f"key {missing[0]!r} is missing: keep every entry, converted, not dropped")
        extra = sorted(set(loaded) - set(original))
        if extra:
            raise Wrong(f"key {extra[0]!r} was not in the checkpoint: keep the keys as they are")
        for key, value in original.items():
            _judge_value(key, value, loaded[key])
    return "every value is a plain type of the right kind now, and torch.load(weights_only=True) accepts the file."


def _judge_value(key: str, value: Any, got: Any) -> None:
    want = _expected(value)
    if isinstance(value, torch.Tensor) or (
        isinstance(value, dict) and any(isinstance(v, torch.Tensor) for v in value.values())
    ):
        if not _same_value(got, value):
            raise Wrong(
                f"{key!r} holds tensors, and it changed (got {type(got).__name__}): keep every tensor as it is; only NumPy scalars need .item()"
            )
        return
    if isinstance(value, np.integer) and isinstance(got, float):
        raise Wrong(
            f"{key!r} is an integer NumPy scalar ({type(value).__name__}): it should load as the int {want}, got the float {got}; .item() keeps the kind (an int stays an int), float() does not"
        )
    if isinstance(got, str) and not isinstance(want, str):
        raise Wrong(
            f"{key!r} became a str ({got!r}); use a number or a dict so it stays usable (.item(), dataclasses.asdict, vars)"
        )
    if not _same_value(got, want):
        raise Wrong(
            f"{key!r} should load as {want!r} ({type(want).__name__}), got {got!r} ({type(got).__name__})"
        )


def _exercise_file(folder: Path) -> Path:
    gen = torch.Generator().manual_seed(0)
    path = folder / "exercise.pth"
    model = {"fc.weight": torch.randn(2, 3, generator=gen)}
    args = argparse.Namespace(lr=0.01, epochs=5)
    torch.save({"model": model, "best_val_loss": np.float64(0.25), "args": args}, path)
    return path


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
    if isinstance(allow, type) or (callable(allow) and hasattr(allow, "__name__")):
        kind = "class" if isinstance(allow, type) else "function"
        raise Wrong(
            f"give a list of objects, e.g. [argparse.Namespace, ...]; got the {kind} {allow.__name__} alone: put every object the file needs in one list"
        )
    if not isinstance(allow, (list, tuple, set, frozenset)):
        raise Wrong(
            f"give a list of objects, e.g. [argparse.Namespace, ...]; got {type(allow).__name__}"
        )
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
    seen: list[Any] = []
    for item in allow:
        obj = _entry_object(item)
        if any(obj is s for s in seen):
            raise Wrong(f"{_label(item)} is listed twice; list each object once")
        seen.append(obj)
    with tempfile.TemporaryDirectory() as tmp:
        path = _exercise_file(Path(tmp))
        err = _loads_with(path, allow)
        if err is not None:
            raise Wrong(
                f"torch.load still refuses the file: it also needs {_refused_global(err)} (the static scan cannot see classes made while loading; read the error)"
            )
        for i, item in enumerate(allow):
            rest = allow[:i] + allow[i + 1 :]
            if _loads_with(path, rest) is None:
                raise Wrong(
                    f"the file does not need {_label(item)}: it loads without it; allow only what it needs"
                )
    return (
        f"these {len(allow)} objects, and nothing else, let the file load with weights_only=True."
    )
