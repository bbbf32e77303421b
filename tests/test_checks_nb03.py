"""Tests for the checks of notebooks/03_partial_loading_and_transfer.ipynb."""
from __future__ import annotations

import pytest

from labs_utils.checks import check

NAMES = ["keep_layers", "fits", "to_small_cnn"]


def keep_layers(state_dict, names):
    prefixes = tuple(name + "." for name in names)
    return {k: v for k, v in state_dict.items() if k.startswith(prefixes)}


def fits(state_dict, model):
    target = model.state_dict()
    return {k: v for k, v in state_dict.items() if k in target and v.shape == target[k].shape}


def to_small_cnn(key):
    if key.startswith("backbone."):
        return "features." + key.removeprefix("backbone.")
    if key.startswith("head.1."):
        return "classifier.2." + key.removeprefix("head.1.")
    return key


SOLUTIONS = {"keep_layers": keep_layers, "fits": fits, "to_small_cnn": to_small_cnn}


def _placeholder_2(a, b):
    pass


def _placeholder_1(a):
    pass


def _not_implemented(*args):
    raise NotImplementedError


@pytest.mark.parametrize("name", NAMES)
def test_solution_is_correct(name):
    result = getattr(check, name)(SOLUTIONS[name])
    assert result.status == "correct", repr(result)
    assert repr(result).startswith("Correct!")


def test_learner_errors_become_hints_not_crashes():
    def broken(state_dict, names):
        return state_dict["nope"]

    result = check.keep_layers(broken)
    assert result.status == "wrong" and "KeyError" in result.message
    result = check.to_small_cnn(lambda key: "features.0.weight" if key == "backbone.0.weight" else key[10**6])
    assert result.status == "wrong" and "IndexError" in result.message


def test_fits_must_not_load_into_the_model():
    def loads_too(state_dict, model):
        out = fits(state_dict, model)
        model.load_state_dict(out, strict=False)
        return out

    result = check.fits(loads_too)
    assert result.status == "wrong" and "changed the model" in result.message


def test_fits_returning_keys_only_gets_a_type_hint():
    result = check.fits(lambda sd, model: list(fits(sd, model)))
    assert result.status == "wrong" and "dict" in result.message


def test_to_small_cnn_must_return_a_string():
    result = check.to_small_cnn(lambda key: 1)
    assert result.status == "wrong" and "str" in result.message
