"""Wrong and right answers for the checks in labs_utils/checks/nb08.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import enum

import numpy as np
import torch


def _returns_input(ckpt):
    return ckpt


def _drops_refused(ckpt):
    return {k: v for k, v in ckpt.items() if isinstance(v, (dict, int, str, torch.Tensor))}


def _stringify(ckpt):
    return {k: (v if isinstance(v, (dict, int, torch.Tensor)) else str(v)) for k, v in ckpt.items()}


def _in_place(ckpt):
    for k, v in ckpt.items():
        if isinstance(v, np.generic):
            ckpt[k] = v.item()
        elif dataclasses.is_dataclass(v):
            ckpt[k] = dataclasses.asdict(v)
        elif isinstance(v, enum.Enum):
            ckpt[k] = v.value
        elif isinstance(v, argparse.Namespace):
            ckpt[k] = vars(v)
    return ckpt


def _float_everything(ckpt):
    out = {}
    for k, v in ckpt.items():
        if isinstance(v, np.generic):
            v = float(v)
        elif dataclasses.is_dataclass(v):
            v = dataclasses.asdict(v)
        elif isinstance(v, enum.Enum):
            v = v.value
        elif isinstance(v, argparse.Namespace):
            v = vars(v)
        out[k] = v
    return out


def _item_anything(ckpt):
    out = {}
    for k, v in ckpt.items():
        if hasattr(v, "item"):  # also catches a one-element tensor
            v = v.item()
        elif dataclasses.is_dataclass(v):
            v = dataclasses.asdict(v)
        elif isinstance(v, enum.Enum):
            v = v.value
        elif isinstance(v, argparse.Namespace):
            v = vars(v)
        out[k] = v
    return out


def _notebook_keys(ckpt):
    out = dict(ckpt)
    out["best_val_loss"] = float(ckpt["best_val_loss"]) if "best_val_loss" in ckpt else None
    if "step" in ckpt:
        out["step"] = int(ckpt["step"])
    for key, convert in (
        ("info", dataclasses.asdict),
        ("stage", lambda s: s.value),
        ("args", vars),
    ):
        if key in ckpt:
            out[key] = convert(ckpt[key])
    return {k: v for k, v in out.items() if v is not None}


def _enum_name(ckpt):
    out = _float_free(ckpt)
    return {k: (ckpt[k].name if isinstance(ckpt[k], enum.Enum) else v) for k, v in out.items()}


def _astuple(ckpt):
    out = _float_free(ckpt)
    return {
        k: (dataclasses.astuple(ckpt[k]) if dataclasses.is_dataclass(ckpt[k]) else v)
        for k, v in out.items()
    }


def _float_free(ckpt):
    """A right answer, used as the base of some wrong ones."""
    out = {}
    for k, v in ckpt.items():
        if isinstance(v, np.generic):
            v = v.item()
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            v = dataclasses.asdict(v)
        elif isinstance(v, enum.Enum):
            v = v.value
        elif isinstance(v, argparse.Namespace):
            v = vars(v)
        out[k] = v
    return out


def _per_kind(ckpt):
    out = copy.copy(ckpt)
    for k, v in ckpt.items():
        if isinstance(v, np.integer):
            out[k] = int(v)
        elif isinstance(v, np.floating):
            out[k] = float(v)
        elif isinstance(v, enum.Enum):
            out[k] = v.value
        elif isinstance(v, argparse.Namespace):
            out[k] = dict(vars(v))
        elif dataclasses.is_dataclass(v):
            out[k] = dataclasses.asdict(v)
    return out


def _duck_typed(ckpt):
    def plain(v):
        match v:
            case enum.Enum():
                return v.value
            case argparse.Namespace():
                return vars(v)
            case _ if type(v).__module__ == "numpy":
                return v.tolist()
            case _ if dataclasses.is_dataclass(v):
                return dataclasses.asdict(v)
        return v

    return {k: plain(v) for k, v in copy.deepcopy(ckpt).items()}


_SCALAR, _FLOAT64 = np._core.multiarray.scalar, np.dtypes.Float64DType

WRONG = {
    "make_loadable": [
        (_returns_input, "still refuses"),
        (_drops_refused, "missing"),
        (_stringify, "became a str"),
        (_in_place, "new dict"),
        (_float_everything, ".item() keeps"),
        (_item_anything, "keep every tensor"),
        (_notebook_keys, "still refuses"),
        (_enum_name, "should load as 'finetune'"),
        (_astuple, "should load as {"),
    ],
    "allowlist_for_exercise_file": [
        ([_SCALAR, np.dtype, argparse.Namespace], "Float64DType"),
        (
            ["numpy._core.multiarray.scalar", "numpy.dtype", "argparse.Namespace"],
            "objects",
        ),
        ([_SCALAR, np.dtype, _FLOAT64, argparse.Namespace, exec], "does not need"),
        (np.dtype, "a list of objects"),
        ([], "empty"),
        (
            [np.float64, np.dtype, _FLOAT64, argparse.Namespace],
            "numpy._core.multiarray.scalar",
        ),
        (
            [_SCALAR, np.dtype, _FLOAT64, argparse.Namespace, argparse.Namespace],
            "twice",
        ),
        (
            [_SCALAR, np.dtype, _FLOAT64, np.dtypes.Int64DType, argparse.Namespace],
            "Int64DType",
        ),
    ],
}
RIGHT = {
    "make_loadable": [_float_free, _per_kind, _duck_typed],
    "allowlist_for_exercise_file": [
        (argparse.Namespace, _FLOAT64, np.dtype, _SCALAR),
        {_SCALAR, np.dtype, _FLOAT64, argparse.Namespace},
        [
            (_SCALAR, "numpy._core.multiarray.scalar"),
            np.dtype,
            _FLOAT64,
            (argparse.Namespace, "argparse.Namespace"),
        ],
    ],
}
