"""Checks for notebooks/07_ddp_and_wrapper_prefixes.ipynb.

Exercise 1 is tried with several prefixes, each with keys chosen to break the usual slips: the
prefix again further in (``model.submodel.weight``), the prefix *only* further in
(``ema.model.weight``), a key that starts with the prefix's letters but not with the prefix
(``model_ema.weight``, which catches an unescaped regex), and keys without it. Exercise 2 is
tried with both wrapper orders and with models that have buffers (BatchNorm).
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Callable, Mapping

import torch
import torch.nn as nn

from . import NotAttempted, Wrong, call_answer, exercise, spy

NB = "07_ddp_and_wrapper_prefixes"


# --------------------------------------------------------------------------------------------
# Exercise 1: strip_prefix(state_dict, prefix)
# --------------------------------------------------------------------------------------------


def _state_dict(keys: list[str], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(2, 3, generator=g) for k in keys}


#: (prefix, keys): the first case is the task's own; the others use other prefixes.
_CASES = [
    (
        "model.",
        [
            "model.encoder.weight",
            "model.decoder.weight",
            "model.submodel.weight",  # the prefix again further in
            "ema.model.weight",  # the prefix only further in: must stay as it is
            "model_ema.weight",  # starts with "model" but not with "model."
            "model.model.bias",  # the prefix twice at the start: remove it once
            "loss_fn.weight",
        ],
    ),  # nothing to do with the prefix
    (
        "module.",
        [
            "module.encoder.submodule.weight",
            "module.head.bias",
            "decoder.submodule.weight",
            "module_list.0.weight",
        ],
    ),
    (
        "_orig_mod.",
        ["_orig_mod.fc1.weight", "_orig_mod.fc1.bias", "teacher._orig_mod.fc1.weight"],
    ),
]


def _expected(key: str, prefix: str) -> str:
    return key[len(prefix) :] if key.startswith(prefix) else key


#: Slips a learner makes, each with what it does to a key and the hint it deserves.
_SLIPS: list[tuple[Callable[[str, str], str], str]] = [
    (
        lambda k, p: k.lstrip(p),
        "str.lstrip removes any of the given *characters* from the left, not a prefix: "
        "'model.decoder.weight'.lstrip('model.') is 'coder.weight'; use k.startswith(prefix) and "
        "k[len(prefix):], or k.removeprefix(prefix)",
    ),
    (
        lambda k, p: k.replace(p, ""),
        "str.replace removes every occurrence: 'model.submodel.weight' became 'subweight'; remove the prefix "
        "only at the start of the key",
    ),
    (
        lambda k, p: k.replace(p, "", 1),
        "k.replace(prefix, '', 1) removes the first occurrence wherever it is: 'ema.model.weight' does not start "
        "with 'model.' (it only contains it) and must stay as it is; test k.startswith(prefix)",
    ),
    (
        lambda k, p: k.split(p, 1)[-1],
        "k.split(prefix, 1)[-1] cuts at the first occurrence wherever it is: 'ema.model.weight' became 'weight'; "
        "a key that only contains the prefix further in must stay as it is; test k.startswith(prefix)",
    ),
    (
        lambda k, p: k.partition(p)[2] or k,
        "k.partition(prefix) cuts at the first occurrence wherever it is: 'ema.model.weight' became 'weight'; "
        "test k.startswith(prefix)",
    ),
    (
        lambda k, p: k[len(p) :] if p in k else k,
        "`prefix in k` is true for 'ema.model.weight' too, which only contains the prefix further in, and "
        "slicing then cut it to 'del.weight'; test k.startswith(prefix)",
    ),
    (
        lambda k, p: re.sub("^" + p, "", k),
        "your pattern was not escaped: in a regular expression '.' matches any character, so '^model.' also "
        "matched 'model_ema.weight'; use re.escape(prefix), or k.startswith(prefix) and slicing",
    ),
    (
        lambda k, p: k[len(p) :],
        "keys that do not start with the prefix must stay as they are: 'loss_fn.weight' lost its first "
        "characters; check k.startswith(prefix) first",
    ),
    (
        lambda k, p: k.split(".", 1)[1] if k.startswith(p.rstrip(".")) else k,
        "you cut at the first dot of every key that starts with the prefix's letters: 'model_ema.weight' does "
        "not start with 'model.'; compare the whole prefix, dot included, with k.startswith(prefix)",
    ),
]


def _diagnose(keys: list[str], prefix: str, got: set[str]) -> str:
    for slip, hint in _SLIPS:
        try:
            if {slip(k, prefix) for k in keys} == got:
                return hint
        except Exception:  # a slip that does not apply to these keys
            continue
    expected = {_expected(k, prefix) for k in keys}
    missing, extra = sorted(expected - got), sorted(got - expected)
    if missing and not extra:
        return (
            f"with prefix {prefix!r} the keys {missing} are missing: keep every key, removing the prefix "
            "only where a key starts with it"
        )
    return f"with prefix {prefix!r} expected the keys {sorted(expected)}, got {sorted(got)}"


@exercise("strip_prefix", notebook=NB)
def strip_prefix(fn) -> str:
    """``fn(state_dict, prefix)`` returns a new dict with ``prefix`` removed from the keys that start with it."""
    for case, (prefix, keys) in enumerate(_CASES):
        sd = _state_dict(keys, seed=70 + case)
        original = dict(sd)
        try:
            out = call_answer(fn, sd, prefix)
        except Wrong as w:
            if "returned None" in str(w) and list(sd) != list(original):
                raise Wrong(
                    "your function changed the dict in place and returned None (that is what "
                    "consume_prefix_in_state_dict_if_present does): build and return a new dict"
                ) from None
            raise
        except NotAttempted:
            raise
        if not isinstance(out, Mapping):
            raise Wrong(f"return a dict of key -> tensor, got {type(out).__name__}")
        if list(sd) != list(original) or any(sd[k] is not v for k, v in original.items()):
            raise Wrong(
                "your function also changed the dict it was given; build and return a new one, and leave "
                "the input as it was"
            )
        got = set(out)
        expected = {_expected(k, prefix): k for k in keys}
        if got != set(expected):
            if case > 0 and {_expected(k, "model.") for k in keys} == got:
                raise Wrong(
                    f"with prefix {prefix!r} nothing was stripped: use the prefix argument, the check "
                    "tries other prefixes too (module., _orig_mod.)"
                )
            raise Wrong(_diagnose(keys, prefix, got))
        for new, old in expected.items():
            if not isinstance(out[new], torch.Tensor) or not torch.equal(out[new], original[old]):
                raise Wrong(
                    f"{new} holds something else than {old} did: keep the values, change only the keys"
                )
    return "only a leading prefix is removed; keys that merely contain it, anywhere, are untouched."


# --------------------------------------------------------------------------------------------
# Exercise 2: load_into_wrapped(wrapped, state_dict)
# --------------------------------------------------------------------------------------------


class _WithBatchNorm(nn.Module):
    """Parameters and buffers (BatchNorm's running statistics), the buffers with non-default values."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)


def _models() -> list[tuple[str, Callable[[], nn.Module]]]:
    from ..models import SimpleModel

    return [("SimpleModel()", SimpleModel), ("a model with BatchNorm", _WithBatchNorm)]


def _wrappers() -> list[tuple[str, Callable[[nn.Module], nn.Module]]]:
    return [
        ("nn.DataParallel({})", nn.DataParallel),
        ("torch.compile({})", torch.compile),
        (
            "nn.DataParallel(torch.compile({}))",
            lambda m: nn.DataParallel(torch.compile(m)),
        ),
        (
            "torch.compile(nn.DataParallel({}))",
            lambda m: torch.compile(nn.DataParallel(m)),
        ),
    ]


def _plain_state(make: Callable[[], nn.Module], seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = make()
    with torch.no_grad():
        for buf in model.buffers():
            if buf.is_floating_point():
                buf.uniform_(0.5, 1.5)
            else:
                buf.fill_(seed)
    return model.state_dict()


def _inner(wrapped: nn.Module) -> nn.Module:
    inner = wrapped
    while isinstance(inner, nn.DataParallel) or hasattr(inner, "_orig_mod"):
        inner = inner.module if isinstance(inner, nn.DataParallel) else inner._orig_mod
    return inner


def _keys_listed(msg: str, what: str) -> list[str]:
    m = re.search(what + r" key\(s\) in state_dict: (.*)", msg)
    return re.findall(r'"([^"]+)"', m.group(1)) if m else []


def _hint_for(name: str, msg: str) -> str:
    unexpected = _keys_listed(msg, "Unexpected")
    if (
        unexpected
        and all(k.startswith("module.") for k in unexpected)
        and _keys_listed(msg, "Missing")
    ):
        return (
            f"{name}: you added 'module.' to every key, but this wrapper's keys do not all start with it "
            "(torch.compile adds '_orig_mod.', and the wrappers nest); load into the inner model instead"
        )
    if "AttributeError" in msg and ("module" in msg or "_orig_mod" in msg):
        return (
            f"{name}: that wrapper does not have the attribute you asked for: torch.compile keeps the model in "
            "._orig_mod, DataParallel in .module; check the type of each layer as you unwrap"
        )
    if "Missing key" in msg and ("module." in msg or "_orig_mod." in msg):
        return (
            f"{name}: you loaded into a wrapper (or a model that still holds one), whose keys start with "
            "'module.' or '_orig_mod.'; the wrappers can come in either order, so unwrap in a loop until "
            "neither DataParallel nor torch.compile is left (or add each wrapper's prefix to the keys)"
        )
    return f"{name}: {msg}"


@exercise("load_into_wrapped", notebook=NB)
def load_into_wrapped(fn) -> str:
    """``fn(wrapped, state_dict)`` loads a plain state_dict into a wrapped model and returns the wrapper."""
    from ..toolkit import normalize_keys

    seed = 11
    # torch.compile's first import of its backend warns about torch.jit
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.jit")
        for model_name, make in _models():
            for pattern, wrap in _wrappers():
                seed += 1
                name = pattern.format(model_name)
                plain = _plain_state(make, seed)
                given = copy.deepcopy(plain)  # what the answer gets; `plain` is the reference
                torch.manual_seed(1000 + seed)
                wrapped = wrap(make())
                try:
                    with spy(nn.Module, "load_state_dict") as loads:
                        out = call_answer(fn, wrapped, given)
                except Wrong as w:
                    raise Wrong(
                        _hint_for(name, str(w).removeprefix("your function raised "))
                    ) from None
                if out is not wrapped:
                    raise Wrong(
                        f"{name}: return the wrapped model you were given (got "
                        f"{type(out).__name__}); the caller keeps using the wrapper"
                    )
                loaded = normalize_keys(wrapped.state_dict())
                # .cpu(): with one GPU visible, DataParallel moved the model to cuda:0
                wrong_keys = [
                    k for k, v in plain.items() if not torch.equal(loaded[k].cpu(), v.cpu())
                ]
                if not wrong_keys:
                    continue
                buffers = {n for n, _ in _inner(wrapped).named_buffers()}
                if all(k in buffers for k in wrong_keys):
                    raise Wrong(
                        f"{name}: the parameters were loaded but not the buffers ({wrong_keys[0]}, BatchNorm's "
                        "running statistics): load the whole state_dict with load_state_dict, not parameter "
                        "by parameter"
                    )
                if len(wrong_keys) == len(plain) and not loads:
                    raise Wrong(
                        f"{name}: nothing was loaded ({wrong_keys[0]} differs): your function never "
                        "called load_state_dict; load the state_dict into the inner model (or add the "
                        "wrapper's prefix), strictly"
                    )
                if len(wrong_keys) == len(plain):
                    raise Wrong(
                        f"{name}: nothing was loaded ({wrong_keys[0]} differs); strict=False hides that: "
                        "no key matched, so it loaded nothing and said nothing. Add the prefix or load into "
                        "the inner model, strictly"
                    )
                raise Wrong(f"{name}: {wrong_keys[0]} does not hold the state_dict's value")
    return (
        "plain weights and buffers load into DataParallel, torch.compile and both, in either order."
    )
