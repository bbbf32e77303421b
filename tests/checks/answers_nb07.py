"""Wrong and right answers for the checks in labs_utils/checks/nb07.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import re

import torch
import torch.nn as nn

from labs_utils.checks.nb07 import _inner


def _replace_everywhere(state_dict, prefix):
    return {k.replace(prefix, ""): v for k, v in state_dict.items()}


def _slice_every_key(state_dict, prefix):
    return {k[len(prefix) :]: v for k, v in state_dict.items()}


def _lstrip(state_dict, prefix):
    return {k.lstrip(prefix): v for k, v in state_dict.items()}


def _drop_other_keys(state_dict, prefix):
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _in_place(state_dict, prefix):
    torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(state_dict, prefix)


def _replace_once(state_dict, prefix):
    return {k.replace(prefix, "", 1): v for k, v in state_dict.items()}


def _split_once(state_dict, prefix):
    return {k.split(prefix, 1)[-1]: v for k, v in state_dict.items()}


def _contains_then_slice(state_dict, prefix):
    return {(k[len(prefix) :] if prefix in k else k): v for k, v in state_dict.items()}


def _unescaped_regex(state_dict, prefix):
    return {re.sub("^" + prefix, "", k): v for k, v in state_dict.items()}


def _hard_coded_model(state_dict, prefix):
    return {(k[len("model.") :] if k.startswith("model.") else k): v for k, v in state_dict.items()}


def _mutates_and_returns(state_dict, prefix):
    for k in list(state_dict):
        if k.startswith(prefix):
            state_dict[k[len(prefix) :]] = state_dict.pop(k)
    return state_dict


def _removeprefix(state_dict, prefix):
    return {k.removeprefix(prefix): v for k, v in state_dict.items()}


def _consume_on_a_copy(state_dict, prefix):
    from collections import OrderedDict

    out = OrderedDict(state_dict)
    torch.nn.modules.utils.consume_prefix_in_state_dict_if_present(out, prefix)
    return out


def _escaped_regex(state_dict, prefix):
    return {re.sub("^" + re.escape(prefix), "", k): v.clone() for k, v in state_dict.items()}


def _load_directly(wrapped, state_dict):
    wrapped.load_state_dict(state_dict)
    return wrapped


def _only_module(wrapped, state_dict):
    wrapped.module.load_state_dict(state_dict)
    return wrapped


def _strict_false(wrapped, state_dict):
    wrapped.load_state_dict(state_dict, strict=False)
    return wrapped


def _dp_then_compile(wrapped, state_dict):
    """A fixed order: first DataParallel, then torch.compile (breaks on compile(DataParallel(m)))."""
    inner = wrapped
    if isinstance(inner, nn.DataParallel):
        inner = inner.module
    if hasattr(inner, "_orig_mod"):
        inner = inner._orig_mod
    inner.load_state_dict(state_dict)
    return wrapped


def _unwrap_once(wrapped, state_dict):
    inner = wrapped.module if isinstance(wrapped, nn.DataParallel) else wrapped._orig_mod
    inner.load_state_dict(state_dict)
    return wrapped


def _parameters_only(wrapped, state_dict):
    inner = _inner(wrapped)
    with torch.no_grad():
        for name, p in inner.named_parameters():
            p.copy_(state_dict[name])
    return wrapped


def _always_module_prefix(wrapped, state_dict):
    wrapped.load_state_dict({"module." + k: v for k, v in state_dict.items()})
    return wrapped


def _returns_inner(wrapped, state_dict):
    inner = _inner(wrapped)
    inner.load_state_dict(state_dict)
    return inner


def _loop_unwrap(wrapped, state_dict):
    _inner(wrapped).load_state_dict(state_dict)
    return wrapped


def _prefix_from_keys(wrapped, state_dict):
    first_plain = next(iter(state_dict))
    first_wrapped = next(k for k in wrapped.state_dict() if k.endswith(first_plain))
    prefix = first_wrapped[: -len(first_plain)]
    wrapped.load_state_dict({prefix + k: v for k, v in state_dict.items()})
    return wrapped


def _recursive_modules(wrapped, state_dict):
    target = wrapped
    while set(target._modules) in ({"module"}, {"_orig_mod"}):
        target = next(iter(target._modules.values()))
    target.load_state_dict(state_dict)
    return wrapped


WRONG = {
    "strip_prefix": [
        (_replace_everywhere, "every occurrence"),
        (_slice_every_key, "do not start with the prefix"),
        (_lstrip, "lstrip"),
        (_drop_other_keys, "missing"),
        (_in_place, "in place"),
        (_replace_once, "only contains it"),
        (_split_once, "first occurrence"),
        (_contains_then_slice, "`prefix in k`"),
        (_unescaped_regex, "re.escape"),
        (_hard_coded_model, "other prefixes"),
        (_mutates_and_returns, "changed the dict it was given"),
    ],
    "load_into_wrapped": [
        (_load_directly, "module."),
        (_only_module, "_orig_mod"),
        (_strict_false, "strict=false"),
        (_dp_then_compile, "either order"),
        (_unwrap_once, "either order"),
        (_parameters_only, "buffers"),
        (_always_module_prefix, "added 'module.'"),
        (_returns_inner, "return the wrapped model"),
    ],
}
RIGHT = {
    "strip_prefix": [_removeprefix, _consume_on_a_copy, _escaped_regex],
    "load_into_wrapped": [_loop_unwrap, _prefix_from_keys, _recursive_modules],
}
