"""Checks for notebooks/08_safe_loading.ipynb."""
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

from . import Wrong, call_answer, exercise

NB = "08_safe_loading"


@dataclasses.dataclass
class _Info:
    arch: str
    epoch: int


class _Stage(enum.Enum):
    TRAIN = "train"
    FINETUNE = "finetune"


def _sample_ckpt() -> dict[str, Any]:
    torch.manual_seed(0)
    return {"model": {"fc.weight": torch.randn(2, 3), "fc.bias": torch.zeros(2)}, "epoch": 4,
            "best_val_loss": np.float64(0.25), "step": np.int64(120), "info": _Info("SimpleModel", 4),
            "stage": _Stage.FINETUNE, "args": argparse.Namespace(lr=0.001, epochs=5)}


def _refused_global(err: BaseException) -> str:
    m = re.search(r"GLOBAL (\S+) was not an allowed global|but got <class '([^']+)'>", str(err))
    return (m.group(1) or m.group(2)) if m else type(err).__name__


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    return a == b


def _returns_input(ckpt):
    return ckpt


def _drops_refused(ckpt):
    return {k: v for k, v in ckpt.items() if k in {"model", "epoch"}}


def _stringify(ckpt):
    return {k: (v if k == "model" or isinstance(v, int) else str(v)) for k, v in ckpt.items()}


@exercise("make_loadable", notebook=NB, wrong=[
    (_returns_input, "still refuses"),
    (_drops_refused, "missing"),
    (_stringify, "became a str"),
])
def make_loadable(fn) -> str:
    """``fn(ckpt)`` returns a copy of ``ckpt`` that ``torch.load`` (weights_only=True) accepts."""
    original = _sample_ckpt()
    out = call_answer(fn, copy.deepcopy(original))
    if not isinstance(out, dict):
        raise Wrong(f"return a dict (the new checkpoint), got {type(out).__name__}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ckpt.pth"
        torch.save(out, path)
        try:
            loaded = torch.load(path)
        except Exception as e:
            raise Wrong(f"torch.load still refuses your checkpoint: it needs {_refused_global(e)}; "
                        "convert that value to a plain type") from None
    missing = sorted(set(original) - set(loaded))
    if missing:
        raise Wrong(f"key {missing[0]!r} is missing: keep every entry, converted, not dropped")
    if not _same_value(loaded["model"], original["model"]):
        raise Wrong("the model state_dict changed: keep its tensors as they are")
    expected = {"epoch": 4, "best_val_loss": 0.25, "step": 120, "info": {"arch": "SimpleModel", "epoch": 4},
                "stage": "finetune", "args": {"lr": 0.001, "epochs": 5}}
    for key, want in expected.items():
        got = loaded[key]
        if isinstance(got, str) and not isinstance(want, str):
            raise Wrong(f"{key!r} became a str ({got!r}); use a number or a dict so it stays usable "
                        "(.item(), dataclasses.asdict, vars)")
        if type(got) is not type(want) or got != want:
            raise Wrong(f"{key!r} should load as {want!r} ({type(want).__name__}), got {got!r} "
                        f"({type(got).__name__})")
    return "every value is a plain type now, and the default torch.load accepts the file."


def _exercise_file(folder: Path) -> Path:
    torch.manual_seed(0)
    path = folder / "exercise.pth"
    torch.save({"model": {"fc.weight": torch.randn(2, 3)}, "best_val_loss": np.float64(0.25),
                "args": argparse.Namespace(lr=0.01, epochs=5)}, path)
    return path


def _loads_with(path: Path, allow: list) -> BaseException | None:
    try:
        with torch.serialization.safe_globals(list(allow)):
            torch.load(path)
    except Exception as e:
        return e
    return None


@exercise("allowlist_for_exercise_file", notebook=NB, wrong=[
    ([np._core.multiarray.scalar, np.dtype, argparse.Namespace], "Float64DType"),
    (["numpy._core.multiarray.scalar", "numpy.dtype", "argparse.Namespace"], "objects"),
    ([np._core.multiarray.scalar, np.dtype, np.dtypes.Float64DType, argparse.Namespace, exec], "does not need"),
    (np.dtype, "list"),
])
def allowlist_for_exercise_file(allow) -> str:
    """``allow``: the narrowest list for ``safe_globals`` that loads the exercise file."""
    if not isinstance(allow, (list, tuple)):
        raise Wrong(f"give a list of objects, e.g. [argparse.Namespace, ...]; got {type(allow).__name__}")
    strings = [a for a in allow if isinstance(a, str)]
    if strings:
        raise Wrong(f"pass the objects themselves, not their names: {strings[0]!r} is a string; "
                    "import the object and put it in the list")
    with tempfile.TemporaryDirectory() as tmp:
        path = _exercise_file(Path(tmp))
        err = _loads_with(path, allow)
        if err is not None:
            raise Wrong(f"torch.load still refuses the file: it also needs {_refused_global(err)} "
                        "(the static scan cannot see classes made while loading; read the error)")
        for i, item in enumerate(allow):
            rest = list(allow[:i]) + list(allow[i + 1:])
            if _loads_with(path, rest) is None:
                name = getattr(item, "__qualname__", repr(item))
                raise Wrong(f"the file does not need {name}: it loads without it; allow only what it needs")
    return f"these {len(allow)} objects, and nothing else, let the file load with weights_only=True."
