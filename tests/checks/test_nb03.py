"""Tests for the checks of notebooks/03_partial_loading_and_transfer.ipynb."""

from __future__ import annotations

import re

import pytest
import torch

from labs_utils.checks import check, nb03

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
    result = check.to_small_cnn(
        lambda key: "features.0.weight" if key == "backbone.0.weight" else key[10**6]
    )
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


# --- the learner simulation's cases and new wrong answers ---------------------------------------


def test_keep_layers_right_answers_unlike_the_solution():
    from collections import OrderedDict

    answers = [
        lambda sd, names: {k: v for k, v in sd.items() if k.split(".", 1)[0] in set(names)},
        lambda sd, names: OrderedDict(
            (k, v.clone()) for k, v in sd.items() if k.partition(".")[0] in names
        ),
    ]
    for answer in answers:
        assert check.keep_layers(answer), check.keep_layers(answer)


@pytest.mark.parametrize(
    "answer,hint",
    [
        # deletes from the given dict and returns it: the simulation's false accept
        (
            lambda sd, names: [sd.pop(k) for k in list(sd) if k.split(".")[0] not in names] and sd,
            "new dict",
        ),
        (
            lambda sd, names: {k: v for k, v in sd.items() if any(f"{n}." in k for n in names)},
            "first part",
        ),
        (
            lambda sd, names: {
                k: v for k, v in sd.items() if k.split(".")[-2:-1] and k.split(".")[-2] in names
            },
            "first part",
        ),
        (
            lambda sd, names: {k: v for k, v in sd.items() if k.rsplit(".", 1)[0] in names},
            "submodules",
        ),
    ],
)
def test_keep_layers_wrong_answers(answer, hint):
    result = check.keep_layers(answer)
    assert result.status == "wrong" and hint in result.message, repr(result)


def test_fits_right_answers_unlike_the_solution():
    def size_loop(state_dict, model):
        own = model.state_dict()
        out = {}
        for name, tensor in state_dict.items():
            if name in own and tensor.size() == own[name].size():
                out[name] = tensor
        return out

    def shape_table(state_dict, model):
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        return {k: v for k, v in state_dict.items() if shapes.get(k) == tuple(v.shape)}

    for answer in (size_loop, shape_table):
        assert check.fits(answer), check.fits(answer)


def test_fits_rejects_named_parameters_the_simulations_false_accept():
    def named_parameters(state_dict, model):
        own = dict(model.named_parameters())
        return {k: v for k, v in state_dict.items() if k in own and v.shape == own[k].shape}

    result = check.fits(named_parameters)
    assert (
        result.status == "wrong" and "buffer" in result.message and "state_dict()" in result.message
    )


def test_fits_cases_hold_what_they_claim():
    model = nb03.Pair()
    keys = set(model.state_dict())
    assert {
        "norm.running_mean",
        "norm.num_batches_tracked",
    } <= keys  # buffers in the state_dict
    # non-persistent
    assert "mask" not in keys and "mask" in dict(model.named_buffers())
    # tied: listed once
    assert "tied.weight" in keys and "tied.weight" not in dict(model.named_parameters())
    sd = nb03._fits_state_dict()
    assert {k for k in sd if k in keys and sd[k].shape == model.state_dict()[k].shape} == {
        "a.bias",
        "b.weight",
        "norm.running_mean",
        "norm.num_batches_tracked",
        "tied.weight",
    }
    # the state_dict's values differ from the model's, so returning the model's tensors shows
    assert all(not torch.equal(sd[k], model.state_dict()[k]) for k in nb03._fits(sd, model))


def test_fits_leaves_the_state_dict_alone_and_catches_a_changed_one():
    def deletes(state_dict, model):
        target = model.state_dict()
        for k in [
            k for k in state_dict if k not in target or state_dict[k].shape != target[k].shape
        ]:
            del state_dict[k]
        return state_dict

    result = check.fits(deletes)
    assert result.status == "wrong" and "new dict" in result.message


@pytest.mark.parametrize(
    "answer,hint",
    [
        (
            lambda key: (
                "classifier.2." + key[5:]
                if key.startswith("head.")
                else ("features." + key[9:] if key.startswith("backbone.") else key)
            ),
            "index included",
        ),
        (
            lambda key: re.sub(
                r"^head\.1", "classifier.2", re.sub(r"^backbone\.", "features.", key)
            ),
            "dot",
        ),
        (
            lambda key: (
                "features." + key.lstrip("backbone.")
                if key.startswith("backbone.")
                else ("classifier.2." + key[7:] if key.startswith("head.1.") else key)
            ),
            "lstrip",
        ),
    ],
)
def test_to_small_cnn_wrong_answers_get_the_hint_of_their_slip(answer, hint):
    result = check.to_small_cnn(answer)
    assert result.status == "wrong" and hint in result.message, repr(result)


def test_to_small_cnn_right_answers_unlike_the_solution():
    def table(key):
        for old, new in (("backbone.", "features."), ("head.1.", "classifier.2.")):
            if key.startswith(old):
                return new + key[len(old) :]
        return key

    def two_anchored_subs(key):
        return re.sub(r"^head\.1\.", "classifier.2.", re.sub(r"^backbone\.", "features.", key))

    for answer in (table, two_anchored_subs):
        assert check.to_small_cnn(answer), check.to_small_cnn(answer)
