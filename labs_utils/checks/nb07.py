"""Checks for notebooks/07_ddp_and_wrapper_prefixes.ipynb: prefixes tried with keys that break the
usual slips (the prefix further in, only further in, its letters without the dot); wrappers in both
orders, on models with buffers."""

from __future__ import annotations

import copy
import functools
import re
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn

from . import Case, Wrong, behaves_like, call_answer, exercise, spy
from .fixtures import named

NB = "07_ddp_and_wrapper_prefixes"


#: (prefix, keys): the first case is the task's own; the others use other prefixes.
# fmt: off
_CASES = [
    ("model.", [
        "model.encoder.weight",
        "model.decoder.weight",
        "model.submodel.weight",  # the prefix again further in
        "ema.model.weight",  # the prefix only further in: must stay as it is
        "model_ema.weight",  # starts with "model" but not with "model."
        "model.model.bias",  # the prefix twice at the start: remove it once
        "loss_fn.weight",  # nothing to do with the prefix
    ]),
    ("module.", ["module.encoder.submodule.weight", "module.head.bias", "decoder.submodule.weight", "module_list.0.weight"]),
    ("_orig_mod.", ["_orig_mod.fc1.weight", "_orig_mod.fc1.bias", "teacher._orig_mod.fc1.weight"]),
]
# fmt: on


def _args(keys: list[str], prefix: str, seed: int) -> tuple[dict, str]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(2, 3, generator=g) for k in keys}, prefix


def _strip(state_dict: dict, prefix: str) -> dict:
    """The reference."""
    return {k.removeprefix(prefix): v for k, v in state_dict.items()}


def _per_key(slip: Callable[[str, str], str]) -> Callable[[dict, str], dict]:
    return lambda sd, p: {slip(k, p): v for k, v in sd.items()}


_consume = torch.nn.modules.utils.consume_prefix_in_state_dict_if_present  # in place, returns None

#: Slips a learner makes, each with the hint it deserves.
# fmt: off
_SLIPS: list[tuple[Callable[[dict, str], Any], str]] = [
    (_per_key(lambda k, p: k.lstrip(p)), "str.lstrip removes any of the given *characters* from the left, not a prefix: 'model.decoder.weight'.lstrip('model.') is 'coder.weight'; use k.startswith(prefix) and k[len(prefix):], or k.removeprefix(prefix)"),
    (_per_key(lambda k, p: k.replace(p, "")), "str.replace removes every occurrence: 'model.submodel.weight' became 'subweight'; remove the prefix only at the start of the key"),
    (_per_key(lambda k, p: k.replace(p, "", 1)), "k.replace(prefix, '', 1) removes the first occurrence wherever it is: 'ema.model.weight' does not start with 'model.' (it only contains it) and must stay as it is; test k.startswith(prefix)"),
    (_per_key(lambda k, p: k.split(p, 1)[-1]), "k.split(prefix, 1)[-1] cuts at the first occurrence wherever it is: 'ema.model.weight' became 'weight'; a key that only contains the prefix further in must stay as it is; test k.startswith(prefix)"),
    (_per_key(lambda k, p: k.partition(p)[2] or k), "k.partition(prefix) cuts at the first occurrence wherever it is: 'ema.model.weight' became 'weight'; test k.startswith(prefix)"),
    (_per_key(lambda k, p: k[len(p) :] if p in k else k), "`prefix in k` is true for 'ema.model.weight' too, which only contains the prefix further in, and slicing then cut it to 'del.weight'; test k.startswith(prefix)"),
    (_per_key(lambda k, p: re.sub("^" + p, "", k)), "your pattern was not escaped: in a regular expression '.' matches any character, so '^model.' also matched 'model_ema.weight'; use re.escape(prefix), or k.startswith(prefix) and slicing"),
    (_per_key(lambda k, p: k[len(p) :]), "keys that do not start with the prefix must stay as they are: 'loss_fn.weight' lost its first characters; check k.startswith(prefix) first"),
    (_per_key(lambda k, p: k.split(".", 1)[1] if k.startswith(p.rstrip(".")) else k), "you cut at the first dot of every key that starts with the prefix's letters: 'model_ema.weight' does not start with 'model.'; compare the whole prefix, dot included, with k.startswith(prefix)"),
    (lambda sd, p: {k[len(p) :]: v for k, v in sd.items() if k.startswith(p)}, "the keys without the prefix are missing ('loss_fn.weight'): keep every key, removing the prefix only where a key starts with it"),
    (lambda sd, p: _strip(sd, "model."), "with prefix 'module.' nothing was stripped: use the prefix argument, the check tries other prefixes too (module., _orig_mod.)"),
    (lambda sd, p: (_consume(sd, p), sd)[1], "your function also changed the dict it was given; build and return a new one, and leave the input as it was"),
    (_consume, "your function changed the dict in place and returned None (that is what consume_prefix_in_state_dict_if_present does): build and return a new dict"),
]
# fmt: on


@exercise("strip_prefix", notebook=NB)
def strip_prefix(fn) -> str:
    """``fn(state_dict, prefix)`` returns a new dict with ``prefix`` removed from the keys that
    start with it."""
    cases = [
        Case(f"prefix {p!r} and keys like {keys[:3]}", functools.partial(_args, keys, p, 70 + i))
        for i, (p, keys) in enumerate(_CASES)
    ]
    behaves_like(fn, _strip, cases, _SLIPS)
    return "only a leading prefix is removed; keys that merely contain it, anywhere, are untouched."


def _models() -> list[tuple[str, Callable[[], nn.Module]]]:
    from ..models import SimpleModel

    return [
        ("SimpleModel()", SimpleModel),
        ("a model with BatchNorm", lambda: named(fc=nn.Linear(4, 3), bn=nn.BatchNorm1d(3))),
    ]


_WRAPPERS: list[tuple[str, Callable[[nn.Module], nn.Module]]] = [
    ("nn.DataParallel({})", nn.DataParallel),
    ("torch.compile({})", torch.compile),
    ("nn.DataParallel(torch.compile({}))", lambda m: nn.DataParallel(torch.compile(m))),
    ("torch.compile(nn.DataParallel({}))", lambda m: torch.compile(nn.DataParallel(m))),
]


def _plain_state(make: Callable[[], nn.Module], seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = make()
    with torch.no_grad():
        for buf in model.buffers():
            buf.uniform_(0.5, 1.5) if buf.is_floating_point() else buf.fill_(seed)
    return model.state_dict()


def _inner(wrapped: nn.Module) -> nn.Module:
    while isinstance(wrapped, nn.DataParallel) or hasattr(wrapped, "_orig_mod"):
        wrapped = wrapped.module if isinstance(wrapped, nn.DataParallel) else wrapped._orig_mod
    return wrapped


def _hint_for(msg: str) -> str:
    """The hint for an error a load raised, from its message."""
    listed = {
        what: re.findall(r'"([^"]+)"', m.group(1))
        for what in ("Unexpected", "Missing")
        if (m := re.search(what + r" key\(s\) in state_dict: (.*)", msg))
    }
    if listed.get("Missing") and all(
        k.startswith("module.") for k in listed.get("Unexpected", [""])
    ):
        return "you added 'module.' to every key, but this wrapper's keys do not all start with it (torch.compile adds '_orig_mod.', and the wrappers nest); load into the inner model instead"
    if "AttributeError" in msg and ("module" in msg or "_orig_mod" in msg):
        return "that wrapper does not have the attribute you asked for: torch.compile keeps the model in ._orig_mod, DataParallel in .module; check the type of each layer as you unwrap"
    if "Missing key" in msg and ("module." in msg or "_orig_mod." in msg):
        return "you loaded into a wrapper (or a model that still holds one), whose keys start with 'module.' or '_orig_mod.'; the wrappers can come in either order, so unwrap in a loop until neither DataParallel nor torch.compile is left (or add each wrapper's prefix to the keys)"
    return msg


@exercise("load_into_wrapped", notebook=NB)
def load_into_wrapped(fn) -> str:
    """``fn(wrapped, state_dict)`` loads a plain state_dict into a wrapped model and returns the wrapper."""
    from ..toolkit import normalize_keys

    seed = 11
    # torch.compile's first import of its backend warns about torch.jit
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.jit")
        for model_name, make in _models():
            for pattern, wrap in _WRAPPERS:
                seed += 1
                name = pattern.format(model_name)
                plain = _plain_state(make, seed)
                torch.manual_seed(1000 + seed)
                wrapped = wrap(make())
                try:  # the answer gets a copy; `plain` is the reference
                    with spy(nn.Module, "load_state_dict") as loads:
                        out = call_answer(fn, wrapped, copy.deepcopy(plain))
                except Wrong as w:
                    raise Wrong(
                        f"{name}: {_hint_for(str(w).removeprefix('your function raised '))}"
                    ) from None
                if out is not wrapped:
                    raise Wrong(
                        f"{name}: return the wrapped model you were given (got {type(out).__name__}); the caller keeps using the wrapper"
                    )
                loaded = normalize_keys(wrapped.state_dict())
                # .cpu(): with one GPU visible, DataParallel moved the model to cuda:0
                wrong = [k for k, v in plain.items() if not torch.equal(loaded[k].cpu(), v.cpu())]
                buffers = {n for n, _ in _inner(wrapped).named_buffers()}
                if wrong and all(k in buffers for k in wrong):
                    raise Wrong(
                        f"{name}: the parameters were loaded but not the buffers ({wrong[0]}, BatchNorm's running statistics): load the whole state_dict with load_state_dict, not parameter by parameter"
                    )
                if len(wrong) == len(plain):
                    why = (
                        "strict=False hides that: no key matched, so it loaded nothing and said nothing. Add the prefix or load into the inner model, strictly"
                        if loads
                        else "your function never called load_state_dict; load the state_dict into the inner model (or add the wrapper's prefix), strictly"
                    )
                    raise Wrong(
                        f"{name}: nothing was loaded ({wrong[0]} differs){'; ' if loads else ': '}{why}"
                    )
                if wrong:
                    raise Wrong(f"{name}: {wrong[0]} does not hold the state_dict's value")
    return (
        "plain weights and buffers load into DataParallel, torch.compile and both, in either order."
    )
