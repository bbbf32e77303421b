"""Wrong and right answers for the checks in labs_utils/checks/nb17.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import contextlib
import functools
import io

import torch
import torch.nn as nn


def make_mlp():  # as in the notebook
    return nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def _quantized_mlp():  # torchao is imported here, not when the tests are collected (~1.4 s)
    with contextlib.redirect_stderr(io.StringIO()):  # GPU-only kernels torchao cannot load here
        from torchao.quantization import Int8WeightOnlyConfig, quantize_
    model = make_mlp()
    quantize_(model, Int8WeightOnlyConfig())
    return model


def _in_place(sd):
    for k, v in list(sd.items()):
        sd[k] = (v.float() if v.dtype == torch.bfloat16 else v).detach().numpy()
    return sd


def _float_model(sd):
    model = make_mlp()
    model.load_state_dict(sd)
    return model


def _dequantized(sd):
    model = make_mlp()
    model.load_state_dict(
        {k: (v.dequantize() if hasattr(v, "qdata") else v) for k, v in sd.items()}
    )
    return model


def _no_return(sd):
    _quantized_mlp().load_state_dict(sd)


def _quantized_then_loaded(sd):
    model = _quantized_mlp()
    model.load_state_dict(sd)
    return model


def _assigned(sd):  # takes the int8 tensors as they are: same behaviour, so right
    model = make_mlp()
    model.load_state_dict(sd, assign=True)
    return model


@functools.cache
def _notebook_model():  # a global model of the notebook, returned whatever the input
    torch.manual_seed(0)
    return _quantized_mlp()


WRONG = {
    "to_numpy": [
        (lambda sd: {k: v.detach().float().numpy() for k, v in sd.items()}, "only bfloat16"),
        (
            lambda sd: {
                k: (v.half() if v.dtype == torch.bfloat16 else v).detach().numpy()
                for k, v in sd.items()
            },
            "65504",
        ),
        (
            lambda sd: {
                k: (v.float() if v.dtype == torch.bfloat16 else v).detach() for k, v in sd.items()
            },
            ".numpy()",
        ),
        (_in_place, "new dict"),
        (lambda sd: {k: v.numpy() for k, v in sd.items()}, "bfloat16"),
        (
            lambda sd: {
                k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in sd.items()
            },
            "detach",
        ),
    ],
    "load_int8": [
        (_float_model, "quantize"),
        (_dequantized, "float32 weights"),
        (_no_return, "not a model"),
        (lambda sd: _notebook_model(), "other outputs"),
    ],
}
RIGHT = {
    "to_numpy": [
        lambda sd: {
            k: v.detach().to(torch.float32 if v.dtype is torch.bfloat16 else v.dtype).cpu().numpy()
            for k, v in sd.items()
        },
        lambda sd: dict(
            (k, v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy())
            for k, v in sd.items()
        ),
    ],
    "load_int8": [_quantized_then_loaded, _assigned],
}
