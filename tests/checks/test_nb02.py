"""Checks of notebooks/02_architecture_mismatch.ipynb: the notebook's solutions and other right answers
pass; answers that only work on SmallCNN's own keys are rejected with a hint that names the slip;
the state_dict given to the answer is never changed by a right answer and a changed one is caught."""

import re
from collections import OrderedDict

import numpy as np
import pytest
import torch

from labs_utils.checks import check, nb02
from labs_utils.models import conv_output_size
from tests.checks import answers_nb02


def remap(state_dict, renames):  # notebook 02, step 6
    out = {}
    for key, value in state_dict.items():
        for old, new in renames.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


def remap_keys(state_dict):  # the notebook's solution
    return remap(state_dict, {"features.": "backbone.", "classifier.": "head."})


@pytest.mark.parametrize(
    "answer",
    [
        remap_keys,
        # from the simulation: OrderedDict + removeprefix + clone, and an anchored regex
        lambda sd: OrderedDict(
            (
                "backbone." + k.removeprefix("features.")
                if k.startswith("features.")
                else "head." + k.removeprefix("classifier.")
                if k.startswith("classifier.")
                else k,
                v.clone(),
            )
            for k, v in sd.items()
        ),
        lambda sd: {
            re.sub(r"^classifier\.", "head.", re.sub(r"^features\.", "backbone.", k)): v
            for k, v in sd.items()
        },
        answers_nb02._right_split,
    ],
)
def test_remap_keys_right_answers(answer):
    assert check.remap_keys(answer), check.remap_keys(answer)


@pytest.mark.parametrize(
    "answer,hint",
    [
        (
            lambda sd: {
                k.replace("features.", "backbone.", 1).replace("classifier.", "head.", 1): v
                for k, v in sd.items()
            },
            "start of a key",
        ),
        (
            lambda sd: {
                ("backbone." + k[9:])
                if k.startswith("features")
                else ("head." + k[11:])
                if k.startswith("classifier")
                else k: v
                for k, v in sd.items()
            },
            "dot",
        ),
        (
            lambda sd: {
                {"features": "backbone", "classifier": "head"}[k.split(".", 1)[0]]
                + "."
                + k.split(".", 1)[1]: v
                for k, v in sd.items()
            },
            "KeyError",
        ),
        (lambda sd: {k: v for k, v in sd.items()}, "old names"),
    ],
)
def test_remap_keys_wrong_answers(answer, hint):
    result = check.remap_keys(answer)
    assert result.status == "wrong" and hint in result.message, repr(result)


def test_remap_keys_catches_a_changed_input_and_leaves_a_right_answers_input_alone():
    def pops(sd):
        out = remap_keys(sd)
        sd.pop(next(iter(sd)))
        return out

    def scales_in_place(sd):
        for v in sd.values():
            if v.is_floating_point():
                v.mul_(1.0 + 1e-3)
        return remap_keys(sd)

    for answer in (pops, scales_in_place):
        result = check.remap_keys(answer)
        assert result.status == "wrong" and "do not modify" in result.message, repr(result)

    source = nb02._source_state_dict()
    before = {k: v.clone() for k, v in source.items()}
    remap_keys(source)
    assert list(source) == list(before) and all(
        torch.equal(source[k], v) for k, v in before.items()
    )


def test_remap_keys_cases_are_what_they_claim():
    # every tricky key that must stay starts or contains a prefix word without being under it
    stay = [k for k in nb02._TRICKY_KEYS if nb02._expected_key(k) == k]
    assert {
        "extra_features.weight",
        "features_old.weight",
        "aux.features.0.weight",
        "classifier_bias",
    } <= set(stay)
    # lstrip really goes wrong on the renamed ones
    assert "features.scale".lstrip("features.") != "scale"
    assert "classifier.scale".lstrip("classifier.") != "scale"
    # the source has moved BatchNorm statistics and shapes other than the notebook's
    sd = nb02._source_state_dict()
    assert int(sd["features.1.num_batches_tracked"]) == 1 and tuple(
        sd["classifier.2.weight"].shape
    ) == (3, 256)


def test_doc_input_size_right_answers():
    for answer in (
        28,
        np.int64(28),
        26 + 3 - 1,
        torch.tensor(28),
        next(n for n in range(1, 100) if conv_output_size(n, kernel_size=3) == 26),
        [n for n in range(100) if conv_output_size(n, 3) == 26][0],
    ):
        assert check.doc_input_size(answer), answer


@pytest.mark.parametrize(
    "answer,hint",
    [
        (27, "25x25"),
        (28.0, "whole number"),
        (np.float64(28.0), "whole number"),
        (False, "bool"),
        ([28], "whole number"),
    ],
)
def test_doc_input_size_wrong_answers(answer, hint):
    result = check.doc_input_size(answer)
    assert result.status == "wrong" and hint in result.message, repr(result)
