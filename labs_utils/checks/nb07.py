"""Checks for notebooks/07_ddp_and_wrapper_prefixes.ipynb."""
from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch
import torch.nn as nn

from . import NotAttempted, Wrong, call_answer, exercise

NB = "07_ddp_and_wrapper_prefixes"


def _lightning_style_state_dict() -> dict[str, torch.Tensor]:
    """Keys as a training framework saves them: the model sits in an attribute named ``model``."""
    g = torch.Generator().manual_seed(7)
    return {
        "model.encoder.weight": torch.randn(4, 3, generator=g),
        "model.decoder.weight": torch.randn(3, 4, generator=g),
        "model.submodel.weight": torch.randn(2, 2, generator=g),  # "model." also appears inside this key
        "loss_fn.weight": torch.ones(3),  # not under the prefix: must stay as it is
    }


_EXPECTED_KEYS = ["encoder.weight", "decoder.weight", "submodel.weight", "loss_fn.weight"]


def _replace_everywhere(state_dict, prefix):
    return {k.replace(prefix, ""): v for k, v in state_dict.items()}


def _slice_every_key(state_dict, prefix):
    return {k[len(prefix):]: v for k, v in state_dict.items()}


def _lstrip(state_dict, prefix):
    return {k.lstrip(prefix): v for k, v in state_dict.items()}


def _drop_other_keys(state_dict, prefix):
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _in_place(state_dict, prefix):
    torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(state_dict, prefix)


@exercise("strip_prefix", notebook=NB, wrong=[
    (_replace_everywhere, "every occurrence"),
    (_slice_every_key, "do not start with the prefix"),
    (_lstrip, "lstrip"),
    (_drop_other_keys, "dropped"),
    (_in_place, "in place"),
])
def strip_prefix(fn) -> str:
    """``fn(state_dict, prefix)`` returns a new dict with ``prefix`` removed from the keys that start with it."""
    sd = _lightning_style_state_dict()
    original = dict(sd)
    try:
        out = call_answer(fn, sd, "model.")
    except NotAttempted:
        if list(sd) != list(original):
            raise Wrong("your function changed the dict in place and returned None (that is what "
                        "consume_prefix_in_state_dict_if_present does): return the new dict") from None
        raise
    if not isinstance(out, Mapping):
        raise Wrong(f"return a dict of key -> tensor, got {type(out).__name__}")
    keys = list(out)
    if keys == [k.lstrip("model.") for k in original]:
        raise Wrong("str.lstrip removes any of the given *characters* from the left, not a prefix: "
                    "'model.decoder.weight'.lstrip('model.') is 'coder.weight'; use k.startswith(prefix) "
                    "and k[len(prefix):], or k.removeprefix(prefix)")
    if "subweight" in keys:
        raise Wrong("str.replace removes every occurrence: 'model.submodel.weight' became 'subweight'; remove "
                    "the prefix only at the start of the key")
    if "loss_fn.weight" not in keys:
        if "loss_fn.weight"[len("model."):] in keys:
            raise Wrong("keys that do not start with the prefix must stay as they are: 'loss_fn.weight' lost "
                        "its first characters; check k.startswith(prefix) first")
        raise Wrong("'loss_fn.weight' was dropped: keep the keys that do not start with the prefix, unchanged")
    if list(sd) != list(original):
        raise Wrong("your function also changed the dict it was given; build and return a new one")
    if set(keys) != set(_EXPECTED_KEYS):
        raise Wrong(f"expected the keys {sorted(_EXPECTED_KEYS)}, got {sorted(keys)}")
    for new, old in zip(_EXPECTED_KEYS, original):
        if not torch.equal(out[new], original[old]):
            raise Wrong(f"{new} holds a different tensor from {old}: keep the values, change only the keys")
    return "only the leading prefix is removed; other keys and inner 'model.' text are untouched."


def _wrapped_models() -> list[tuple[str, nn.Module]]:
    from ..models import SimpleModel

    with warnings.catch_warnings():  # torch.compile's first import of its backend warns about torch.jit
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*torch.jit")
        return [
            ("nn.DataParallel(SimpleModel())", nn.DataParallel(SimpleModel())),
            ("torch.compile(SimpleModel())", torch.compile(SimpleModel())),
            ("nn.DataParallel(torch.compile(SimpleModel()))", nn.DataParallel(torch.compile(SimpleModel()))),
        ]


def _load_directly(wrapped, state_dict):
    wrapped.load_state_dict(state_dict)
    return wrapped


def _only_module(wrapped, state_dict):
    wrapped.module.load_state_dict(state_dict)
    return wrapped


def _strict_false(wrapped, state_dict):
    wrapped.load_state_dict(state_dict, strict=False)
    return wrapped


@exercise("load_into_wrapped", notebook=NB, wrong=[
    (_load_directly, "module."),
    (_only_module, "_orig_mod"),
    (_strict_false, "strict=false"),
])
def load_into_wrapped(fn) -> str:
    """``fn(wrapped, state_dict)`` loads a plain state_dict into a wrapped model and returns the wrapper."""
    from ..models import SimpleModel
    from ..prefixes import normalize_keys

    torch.manual_seed(11)
    plain = SimpleModel().state_dict()
    for name, wrapped in _wrapped_models():
        try:
            out = call_answer(fn, wrapped, plain)
        except Wrong as w:
            msg = str(w)
            if "AttributeError" in msg and "module" in msg:
                raise Wrong(f"{name}: torch.compile's wrapper keeps the model in ._orig_mod, not .module; unwrap "
                            "each layer (or add each wrapper's prefix to the keys)") from None
            if "Missing key" in msg and "module." in msg:
                raise Wrong(f"{name}: a wrapper's keys start with 'module.' or '_orig_mod.'; load into the wrapped "
                            "model (wrapped.module) or add the prefix to every key") from None
            raise Wrong(f"{name}: {msg}") from None
        if out is not wrapped:
            raise Wrong(f"{name}: return the wrapped model you were given")
        loaded = normalize_keys(wrapped.state_dict())
        for k, v in plain.items():
            if not torch.equal(loaded[k], v):
                raise Wrong(f"{name}: {k} was not loaded (strict=False hides the mismatch: it loaded nothing, "
                            "because no key matched); add the prefix or load into the inner model")
    return "plain weights load into DataParallel, torch.compile and nested wrappers alike."
