"""Checks of notebooks/07_ddp_and_wrapper_prefixes.ipynb: right answers, every wrong answer's hint, placeholders."""
import pytest
import torch.nn as nn

from labs_utils.checks import check, _load_all

_load_all()



def strip_prefix(state_dict, prefix):
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state_dict.items()}


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


def test_strip_prefix_that_mutates_its_input_is_told():
    def mutating(state_dict, prefix):
        for k in list(state_dict):
            if k.startswith(prefix):
                state_dict[k[len(prefix):]] = state_dict.pop(k)
        return state_dict

    result = check.strip_prefix(mutating)
    assert result.status == "wrong" and "changed the dict it was given" in result.message


def test_load_into_wrapped_must_return_the_wrapper():
    def returns_inner(wrapped, state_dict):
        wrapped.module.load_state_dict(state_dict)
        return wrapped.module

    result = check.load_into_wrapped(returns_inner)
    assert result.status == "wrong" and "return the wrapped model" in result.message
