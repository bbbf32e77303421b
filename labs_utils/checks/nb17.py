"""Checks for notebooks/17_precision_and_quantization.ipynb: each answer is run on cases and
compared with a reference; the hint comes from the known mistake that behaves like it."""

from __future__ import annotations

import contextlib
import functools
import io

import torch
import torch.nn as nn

from . import Case, behaves_like, exercise

NB = "17_precision_and_quantization"


def _to_numpy(sd):
    return {
        k: (v.float() if v.dtype == torch.bfloat16 else v).detach().cpu().numpy()
        for k, v in sd.items()
    }


def _linear(n_in, n_out):
    torch.manual_seed(0)  # the same weights each time a case is built
    return nn.Linear(n_in, n_out)


def _numpy_cases():
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(3, 4, generator=g)
    return [
        Case("a float32 state_dict", lambda: (_linear(4, 3).state_dict(),)),
        Case("bfloat16 weights", lambda: ({"w": weight.bfloat16()},)),
        Case(
            "float16 weights and an int64 buffer",
            lambda: ({"w": weight.half(), "num_batches_tracked": torch.tensor(5)},),
        ),
        Case(
            "bfloat16 values above 65504",
            lambda: ({"w": torch.tensor([1e5, -3e38], dtype=torch.bfloat16)},),
        ),
        Case(
            "parameters that require grad (`dict(model.named_parameters())`)",
            lambda: (dict(_linear(2, 2).named_parameters()),),
        ),
    ]


def _in_place(sd):
    sd.update(_to_numpy(sd))
    return sd


_NUMPY_MISTAKES = [
    (
        lambda sd: {
            k: (v.float() if v.dtype == torch.bfloat16 else v).detach() for k, v in sd.items()
        },
        "the values are still torch tensors: the tool reads NumPy arrays, so end with `.numpy()`",
    ),
    (
        _in_place,
        "your function replaced the tensors in the dict it was given: build and return a new dict, and leave the caller's state_dict as it was",
    ),
    (
        lambda sd: {k: v.numpy() for k, v in sd.items()},
        "NumPy has no bfloat16 (and `.numpy()` refuses a tensor that requires grad): convert bfloat16 with `.float()` and call `.detach()` first",
    ),
    (
        lambda sd: {k: v.detach().float().numpy() for k, v in sd.items()},
        "only bfloat16 changes dtype: float16 stays float16 and an integer buffer stays an integer; convert with `.float()` only when `v.dtype == torch.bfloat16`",
    ),
    (
        lambda sd: {
            k: (v.half() if v.dtype == torch.bfloat16 else v).detach().numpy()
            for k, v in sd.items()
        },
        "bfloat16 -> float16 loses range: values above 65504 become inf; use `.float()`, which holds every bfloat16 value exactly",
    ),
    (
        lambda sd: {
            k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in sd.items()
        },
        "`.numpy()` refuses a tensor that requires grad: call `.detach()` first",
    ),
]


@exercise("to_numpy", notebook=NB)
def to_numpy(fn) -> str:
    """``fn(state_dict)`` returns a new dict of NumPy arrays: bfloat16 as float32, every other
    dtype kept, the input unchanged."""
    behaves_like(fn, _to_numpy, _numpy_cases(), _NUMPY_MISTAKES)
    return "bfloat16 became float32 exactly, float16 and integer tensors kept their dtype, and the input was left as it was (tried on five state_dicts, one with values above 65504)."


def _quantize(model):
    with contextlib.redirect_stderr(io.StringIO()):
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    quantize_(model, Int8WeightOnlyConfig())
    return model


_PROBE = torch.randn(4, 256, generator=torch.Generator().manual_seed(0))


def _mlp():
    return nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


@functools.cache
def _int8_state_dict():
    # other weights than the notebook's, so a returned global model shows
    torch.manual_seed(17)
    return _quantize(_mlp()).state_dict()


@functools.cache
def _saved_outputs():
    with torch.no_grad():
        return _load_int8(_int8_state_dict())(_PROBE)


def _behaviour(out, args):
    """The weights' types, and whether the model answers like the one the state_dict came from."""
    if not isinstance(out, nn.Module):
        return ("not a model", type(out).__name__)
    with torch.no_grad():
        alike = torch.equal(out(_PROBE), _saved_outputs())
    answers = "the saved model's outputs" if alike else "other outputs than the saved model"
    return (", ".join(type(out[i].weight).__name__ for i in (0, 2)), answers)


def _load_int8(sd, quantized: bool = True, dequantize: bool = False):
    """The reference: a fresh model quantized first, then loaded; and two known mistakes (a float
    model; the int8 tensors dequantized to fit one)."""
    model = _quantize(_mlp()) if quantized else _mlp()
    model.load_state_dict(
        {k: v.dequantize() if dequantize and hasattr(v, "qdata") else v for k, v in sd.items()}
    )
    return model


@exercise("load_int8", notebook=NB)
def load_int8(fn) -> str:
    """``fn(state_dict)`` returns a new model with int8 weights computing what the saved one did."""
    cases = [
        Case("an int8 state_dict of another make_mlp()", lambda: (_int8_state_dict(),), _behaviour)
    ]
    mistakes = [
        (
            functools.partial(_load_int8, quantized=False),
            "a float model cannot take int8 tensors: quantize the fresh model with `quantize_(model, Int8WeightOnlyConfig())` first, then `load_state_dict`",
        ),
        (
            functools.partial(_load_int8, quantized=False, dequantize=True),
            "the model computes with float32 weights now: keep them int8 by quantizing the fresh model first and loading the int8 state_dict into it",
        ),
    ]
    behaves_like(fn, _load_int8, cases, mistakes)
    return "a fresh model, quantized the same way, then loaded: same outputs, weights still int8."
