"""Checks of notebooks/07_ddp_and_wrapper_prefixes.ipynb: right answers, and the cases that make
the checks hard to fool (prefix only inside a key, other prefixes, both wrapper orders, buffers).
tests/checks/test_framework.py feeds every declared wrong answer."""

import pytest
import torch.nn as nn

from labs_utils.checks import check, load_all, nb07

load_all()


def strip_prefix(state_dict, prefix):
    return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


def strip_prefix_removeprefix(state_dict, prefix):
    return {k.removeprefix(prefix): v for k, v in state_dict.items()}


def load_into_wrapped(wrapped, state_dict):
    inner = wrapped
    while isinstance(inner, nn.DataParallel) or hasattr(inner, "_orig_mod"):
        inner = inner.module if isinstance(inner, nn.DataParallel) else inner._orig_mod
    inner.load_state_dict(state_dict)
    return wrapped


def load_with_added_prefix(wrapped, state_dict):
    prefix = next(iter(wrapped.state_dict()))[: -len(next(iter(state_dict)))]
    wrapped.load_state_dict({prefix + k: v for k, v in state_dict.items()})
    return wrapped


@pytest.mark.parametrize("fn", [strip_prefix, strip_prefix_removeprefix])
def test_strip_prefix_right(fn):
    assert check.strip_prefix(fn)


@pytest.mark.parametrize("fn", [load_into_wrapped, load_with_added_prefix])
def test_load_into_wrapped_right(fn):
    assert check.load_into_wrapped(fn)


def test_strip_prefix_cases_break_the_usual_slips():
    """Every case has a key that contains the prefix only further in; the task's case also has a key
    that starts with the prefix's letters but not its dot, and one with the prefix twice at the start."""
    for prefix, keys in nb07._CASES:
        assert any(prefix in k and not k.startswith(prefix) for k in keys), prefix
        assert (
            any(k.startswith(prefix) for k in keys)
            and any(prefix not in k for k in keys)
            or prefix != "model."
        )
    prefix, keys = nb07._CASES[0]
    assert any(k.startswith(prefix[:-1]) and not k.startswith(prefix) for k in keys)
    assert any(k.startswith(prefix * 2) for k in keys)
    assert {p for p, _ in nb07._CASES} >= {"model.", "module.", "_orig_mod."}


def test_strip_prefix_that_mutates_its_input_is_told():
    def mutating(state_dict, prefix):
        for k in list(state_dict):
            if k.startswith(prefix):
                state_dict[k[len(prefix) :]] = state_dict.pop(k)
        return state_dict

    result = check.strip_prefix(mutating)
    assert result.status == "wrong" and "changed the dict it was given" in result.message


def test_load_into_wrapped_tries_both_orders_and_buffers():
    names = [w for w, _ in nb07._WRAPPERS]
    assert (
        "torch.compile(nn.DataParallel({}))" in names
        and "nn.DataParallel(torch.compile({}))" in names
    )
    assert any(any(True for _ in make().buffers()) for _, make in nb07._models())


def test_load_into_wrapped_must_return_the_wrapper():
    def returns_inner(wrapped, state_dict):
        wrapped.module.load_state_dict(state_dict)
        return wrapped.module

    result = check.load_into_wrapped(returns_inner)
    assert result.status == "wrong" and "return the wrapped model" in result.message


def test_load_into_wrapped_leaves_the_given_state_dict_usable():
    """Each case gets its own copy, so an answer that renames keys in place is judged on that case."""

    def renames_in_place(wrapped, state_dict):
        load_into_wrapped(wrapped, state_dict)
        for k in list(state_dict):
            state_dict["x." + k] = state_dict.pop(k)
        return wrapped

    assert check.load_into_wrapped(renames_in_place)
